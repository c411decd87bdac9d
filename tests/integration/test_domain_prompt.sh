#!/usr/bin/env bash
# chsmd init --domain-name without --domain-secret-file: on a terminal the
# secret is asked twice without echo and gives the same domain as the file
# would; without a terminal it is a usage error; two different entries
# create nothing.
. "$(dirname "$0")/lib.sh"
it_begin domain_prompt
PTY="python3 $(dirname "$0")/pty_run.py"
SECRET='correct horse battery staple'
domain_fp_of() {
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select value from settings where name=?", ("domain.fingerprint",)).fetchone()[0])' "$1/chsm.db"
}

printf '%s\n' "$SECRET" > "$IT_DIR/secret"
"$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/a" --domain-name prod-east \
  --domain-secret-file "$IT_DIR/secret" > /dev/null || fail_now "init with a secret file"

export ANSWERS="$SECRET
$SECRET"
$PTY ANSWERS "$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/b" --domain-name prod-east > "$IT_DIR/b.out"
check "init prompts on a terminal and succeeds" [ $? -eq 0 ]
check "it asked twice" [ "$(grep -o 'domain secret' "$IT_DIR/b.out" | wc -l)" -eq 2 ]
check "it printed the device lines" grep -q '^enrollment-code: ' "$IT_DIR/b.out"
check "the secret is not echoed" bash -c "! grep -q 'battery' '$IT_DIR/b.out'"
check "typed and file secrets give the same domain" \
  [ "$(domain_fp_of "$IT_DIR/a")" = "$(domain_fp_of "$IT_DIR/b")" ]

export ANSWERS="$SECRET
${SECRET}x"
$PTY ANSWERS "$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/c" --domain-name prod-east > "$IT_DIR/c.out"
check "two different entries fail (exit 1)" [ $? -eq 1 ]
check "and say so" grep -q 'the two entries differ' "$IT_DIR/c.out"
check "and create nothing" [ ! -e "$IT_DIR/c/chsm.db" ]

export ANSWERS="short
short"
$PTY ANSWERS "$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/d" --domain-name prod-east > "$IT_DIR/d.out"
check "a secret under 8 bytes fails (exit 1)" [ $? -eq 1 ]
check "and initialises nothing" [ ! -e "$IT_DIR/d/chsm.db" ]

"$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/e" --domain-name prod-east < /dev/null > "$IT_DIR/e.out" 2>&1
check "without a terminal: usage error (exit 2)" [ $? -eq 2 ]
check "with the usage message" grep -q 'go together' "$IT_DIR/e.out"
check "and nothing created" [ ! -e "$IT_DIR/e/chsm.db" ]
"$CHSM_BIN/chsmd" init --state-dir "$IT_DIR/f" --domain-secret-file "$IT_DIR/secret" < /dev/null > /dev/null 2>&1
check "--domain-secret-file alone is a usage error" [ $? -eq 2 ]
it_end
