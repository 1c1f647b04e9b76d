#!/usr/bin/env bash
# Runs the Dockerfile's steps without Docker (for machines with no Docker daemon): copies what the image
# copies into a clean directory, runs the same set-up script, bakes the default model into a fresh cache,
# starts the app bound to 0.0.0.0 as the container does, then checks the health check's command, that a
# request without the token gets 403 and that the printed link opens the page.
#   bash scripts/check_docker_steps.sh [DIR]   (default: a new temporary directory; removed on success)
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$(mktemp -d /tmp/visit-docker-check.XXXXXX)}"
mkdir -p "$dir/app"
cd "$dir/app"
cp -r "$src"/requirements.txt "$src"/requirements-dev.txt "$src"/pyproject.toml "$src"/README.md \
      "$src"/scripts "$src"/visit "$src"/app.py "$src"/assets .
find . -name __pycache__ -prune -exec rm -rf {} +
export VISIT_CACHE_DIR="$dir/cache" PYTHONUNBUFFERED=1
echo "== setup.sh (as in the image) in $dir/app"
time bash scripts/setup.sh
echo "== bake the default model into $VISIT_CACHE_DIR"
time .venv/bin/python -c "from visit.models.loading import default_checkpoint; print(default_checkpoint())"
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
echo "== start: VISIT_HOST=0.0.0.0 VISIT_PORT=$port .venv/bin/python app.py"
unset VISIT_TOKEN
VISIT_HOST=0.0.0.0 VISIT_PORT=$port .venv/bin/python app.py > "$dir/app.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  grep -q "token=" "$dir/app.log" && curl_ok=1 && break
  kill -0 $pid 2>/dev/null || { cat "$dir/app.log"; exit 1; }
  sleep 0.5
done
sleep 2
echo "== the health check's command"
VISIT_PORT=$port .venv/bin/python -c "import os, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:%s/_visit/health' % os.environ.get('VISIT_PORT', '8050'), timeout=4).read())"
link=$(grep -o "http://127.0.0.1:$port/?token=[A-Za-z0-9_-]*" "$dir/app.log" | head -1)
echo "== without the token, then the printed link ($(echo "$link" | sed 's/token=.*/token=.../'))"
.venv/bin/python - "$port" "$link" <<'PY'
import http.cookiejar, sys, urllib.error, urllib.request
port, link = sys.argv[1], sys.argv[2]
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    raise SystemExit("FAIL: the page answered without the token")
except urllib.error.HTTPError as exc:
    assert exc.code == 403, exc.code
    print("without token: 403")
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
page = opener.open(link, timeout=30).read().decode()
assert "<title>visit</title>" in page
print("with the link: the page (", len(page), "bytes ), cookie kept:",
      "visit-prompt" in opener.open(f"http://127.0.0.1:{port}/_dash-layout", timeout=30).read().decode())
PY
echo "== the log"
sed 's/token=[A-Za-z0-9_-]*/token=.../' "$dir/app.log" | grep -v "^127.0.0.1"
kill $pid
trap - EXIT
[ -z "${1:-}" ] && rm -rf "$dir"
echo "OK: the image's steps work in a clean directory"
