# shellcheck shell=bash
# Sourced by dynamodb-local.sh and moto.sh: one stand-in service on a free loopback port, its state in
# infra/.local/NAME.{pid,endpoint,log}. The caller defines `launch PORT LOG` (start it in the background) and
# ends with `service_main LABEL DEFAULT_NAME VARIABLE "$@"`, which handles
#   start [NAME]   start an instance and print `export VARIABLE=http://127.0.0.1:PORT` once it answers;
#   reuse [NAME]   print that of the instance NAME if it is still running and answering, else start it;
#   stop [NAME]    stop the instance (if any).
# NAME defaults to DEFAULT_NAME (what the test command uses); infra/scripts/invoke.sh keeps its own instances.

service_answers() {  # service_answers PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

service_main() {
  : "${root:?the sourcing script sets root, the repository}"
  local label="$1" name="${5:-$2}" var="$3" command="${4:-start}"
  local state="$root/infra/.local"
  local pidfile="$state/$name.pid" endpointfile="$state/$name.endpoint" log="$state/$name.log"
  mkdir -p "$state"
  case "$command" in
  reuse)
    if [ -f "$pidfile" ] && [ -f "$endpointfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
      && service_answers "$(sed 's/.*://' "$endpointfile")"; then
      echo "export $var=$(cat "$endpointfile")"
      return 0
    fi
    service_main "$label" "$2" "$var" start "$name"
    ;;
  start)
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -f "$endpointfile"
    launch "$port" "$log"
    echo $! >"$pidfile"
    for _ in $(seq 1 120); do
      if service_answers "$port"; then
        echo "http://127.0.0.1:$port" >"$endpointfile"
        echo "export $var=http://127.0.0.1:$port"
        return 0
      fi
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$label exited:" >&2; cat "$log" >&2; exit 1
      fi
      sleep 0.25
    done
    echo "$label did not start within 30 s" >&2; exit 1
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile" "$endpointfile"
    fi
    ;;
  *)
    echo "usage: $0 start|reuse|stop [NAME]" >&2; exit 2 ;;
  esac
}
