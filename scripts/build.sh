#!/usr/bin/env bash
# Configures and builds OpenCHSM into ./build (or $BUILD_DIR).
# SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
args=(-S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo})
if [ "${SANITIZE:-0}" = 1 ]; then args+=(-DOPENCHSM_SANITIZE=ON); fi
cmake "${args[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
