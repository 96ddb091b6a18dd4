# bash completion for pm: verbs, flags and app names.
# Installed by `make install` into share/bash-completion/completions/pm.
_pm() {
  local cur prev verb
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  verb=${COMP_WORDS[1]}
  local verbs="start stop restart reload delete list ls status jlist describe env id prettylist logs scale
    pid ping report kill reset flush reloadLogs sendSignal save resurrect cleardump update startup unstartup
    console monit runtime run daemon startOrRestart startOrReload startOrGracefulReload init ecosystem
    send attach export deploy serve web install trigger help"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$verbs --version -e" -- "$cur"))
    return
  fi
  case "$cur" in
    -*)
      local flags="--help --silent"
      case "$verb" in
        start) flags="--name --instances --exec-mode --interpreter --interpreter-args --node-args --cwd
          --namespace --watch --ignore-watch --watch-delay --max-memory-restart --restart-delay
          --exp-backoff-restart-delay --max-restarts --min-uptime --kill-timeout --kill-signal
          --shutdown-with-message --stop-exit-codes --no-autorestart --no-autostart --no-treekill --cron
          --cron-restart --wait-ready --listen-timeout --user --uid --gid --env-file --filter-env --instance-var --pid
          --time --log-date-format --log-type --merge-logs --disable-logs --output --error --log
          --source-map-support --env --only --update-env --no-daemon --force --silent" ;;
        restart|reload) flags="--update-env --only --env --name --node-args --silent" ;;
        startOrRestart|startOrReload|startOrGracefulReload) flags="--update-env --only --env --silent" ;;
        init|ecosystem) flags="--json" ;;
        stop|delete) flags="--only --silent" ;;
        logs) flags="--lines --err --out --nostream --json --raw --format --timestamp --highlight" ;;
        save) flags="--force" ;;
        describe) flags="--json" ;;
        export) flags="--to --out --env --image --keep-pm" ;;
        web) flags="--listen --off --user" ;;
        serve) flags="--port --host --name --homepage --spa --basic-auth-username --basic-auth-password --force --silent" ;;
        list|ls|status) flags="--watch" ;;
      esac
      COMPREPLY=($(compgen -W "$flags" -- "$cur"))
      return ;;
  esac
  case "$verb" in
    stop|restart|reload|delete|describe|logs|pid|reset|flush|scale|sendSignal|env|id|send|attach)
      local names
      names=$(pm jlist 2>/dev/null | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | sort -u)
      COMPREPLY=($(compgen -W "all $names" -- "$cur"))
      case "$verb" in stop|restart|reload|delete|describe) COMPREPLY+=($(compgen -f -- "$cur")) ;; esac ;;
    start|run|runtime|export|deploy|startOrRestart|startOrReload|startOrGracefulReload)
      COMPREPLY=($(compgen -f -- "$cur")) ;;
    help)
      COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
  esac
}
complete -o default -F _pm pm
