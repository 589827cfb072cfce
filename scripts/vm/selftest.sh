#!/usr/bin/env bash
# Checks the host side of scripts/hw-test (result parsing, expected skips, exit status) on
# synthetic results, without a VM: scripts/vm/selftest.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hwtest="$here/../hw-test"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# case NAME KERNEL WANT_EXIT WANT_LAST_LINE <<< results
case_() {
    local name=$1 kernel=$2 want_rc=$3 want_last=$4 rc=0 out
    cat >"$tmp/$name"
    out=$("$hwtest" --kernel "$kernel" --parse "$tmp/$name" 2>&1) || rc=$?
    if [ "$rc" != "$want_rc" ] || [ "$(tail -n 1 <<<"$out")" != "$want_last" ]; then
        echo "selftest FAIL $name: exit $rc (want $want_rc), last line '$(tail -n 1 <<<"$out")' (want '$want_last')"
        sed 's/^/    /' <<<"$out"
        fails=$((fails + 1))
    else
        echo "selftest ok   $name"
    fi
}

case_ all-pass custom 0 "2 passed, 0 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a note
HWTEST PASS env::b
HWTEST-SUMMARY 2 passed, 0 failed, 0 skipped
HWTEST-END rc=0
EOF2
case_ unexpected-skip-on-custom custom 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a
HWTEST SKIP env::cma_heap no CMA heap
HWTEST-SUMMARY 1 passed, 0 failed, 1 skipped
HWTEST-END rc=0
EOF2
case_ expected-skip-on-6.1 debian-6.1 0 "1 passed, 0 failed, 2 skipped" <<'EOF2'
HWTEST-BEGIN kernel=debian-6.1 release=6.1.0 bin=hw-tests
HWTEST PASS env::drm_vgem
HWTEST SKIP env::udmabuf none
HWTEST SKIP conformance::heap_zeroed_4k none
HWTEST-SUMMARY 1 passed, 0 failed, 2 skipped
HWTEST-END rc=0
EOF2
case_ unlisted-skip-on-6.12-is-a-skip debian-6.12 0 "0 passed, 0 failed, 1 skipped" <<'EOF2'
HWTEST-BEGIN kernel=debian-6.12 release=6.12 bin=hw-tests
HWTEST SKIP something::new why
HWTEST-SUMMARY 0 passed, 0 failed, 1 skipped
HWTEST-END rc=0
EOF2
case_ unexpected-skip-on-custom-7.2 custom-7.2 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom-7.2 release=7.2.13 bin=hw-tests
HWTEST PASS env::a
HWTEST SKIP env::cma_heap no CMA heap
HWTEST-SUMMARY 1 passed, 0 failed, 1 skipped
HWTEST-END rc=0
EOF2
case_ unexpected-skip-on-custom-arm64 custom-arm64 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom-arm64 release=6.12.117 bin=hw-tests
HWTEST PASS env::a
HWTEST SKIP vfio::edu_type1_rw_ro no IOMMU group
HWTEST-SUMMARY 1 passed, 0 failed, 1 skipped
HWTEST-END rc=0
EOF2
case_ expected-skip-on-5.10 debian-5.10 0 "1 passed, 0 failed, 1 skipped" <<'EOF2'
HWTEST-BEGIN kernel=debian-5.10 release=5.10.0 bin=hw-tests
HWTEST PASS env::drm_vgem
HWTEST SKIP env::udmabuf none
HWTEST-SUMMARY 1 passed, 0 failed, 1 skipped
HWTEST-END rc=0
EOF2
case_ failure custom 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a
HWTEST FAIL env::b it broke
HWTEST-SUMMARY 1 passed, 1 failed, 0 skipped
HWTEST-END rc=1
EOF2
case_ did-not-boot custom 1 "0 passed, 1 failed, 0 skipped" </dev/null
case_ did-not-finish custom 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a
EOF2
case_ summary-mismatch custom 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a
HWTEST-SUMMARY 2 passed, 0 failed, 0 skipped
HWTEST-END rc=0
EOF2
case_ crash-without-fail custom 1 "1 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST PASS env::a
HWTEST-SUMMARY 1 passed, 0 failed, 0 skipped
HWTEST-END rc=101
EOF2
case_ nothing-ran custom 1 "0 passed, 1 failed, 0 skipped" <<'EOF2'
HWTEST-BEGIN kernel=custom release=6.12.107 bin=hw-tests
HWTEST-SUMMARY 0 passed, 0 failed, 0 skipped
HWTEST-END rc=0
EOF2
[ "$fails" = 0 ] && echo "selftest: all cases ok" || { echo "selftest: $fails case(s) failed"; exit 1; }
