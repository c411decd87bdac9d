# TLS for the HTTPS server (tls.h): server contexts, TLS bufferevents and
# self-signed certificates. Its own library so that the HTTP module links
# libevent's OpenSSL glue without pulling in the rest of the crypto module.
add_library(chsm_tls STATIC ${CMAKE_CURRENT_LIST_DIR}/tls.c)
target_include_directories(chsm_tls PUBLIC ${PROJECT_SOURCE_DIR}/src)
target_compile_definitions(chsm_tls PRIVATE OPENSSL_API_COMPAT=30000 OPENSSL_NO_DEPRECATED)
target_link_libraries(chsm_tls PUBLIC PkgConfig::OPENSSL PkgConfig::LIBEVENT
                      PRIVATE chsm_common)
