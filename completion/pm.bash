# bash completion for pm: verbs, flags and app names.
# Installed by `make install` into share/bash-completion/completions/pm.
_pm() {
  local cur prev verb
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  verb=${COMP_WORDS[1]}
  local verbs="start stop restart reload delete list ls status jlist describe logs scale pid ping kill
    reset flush reloadLogs sendSignal save resurrect update startup unstartup console monit runtime run
    daemon startOrRestart startOrReload startOrGracefulReload init ecosystem help"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$verbs --version -e" -- "$cur"))
    return
  fi
  case "$cur" in
    -*)
      local flags="--help --silent"
      case "$verb" in
        start) flags="--name --instances --interpreter --interpreter-args --cwd --namespace --watch
          --ignore-watch --watch-delay --max-memory-restart --restart-delay --exp-backoff-restart-delay
          --max-restarts --min-uptime --kill-timeout --kill-signal --stop-exit-codes --no-autorestart
          --cron-restart --wait-ready --listen-timeout --time --merge-logs --output --error --log
          --env --only --force --silent" ;;
        restart|reload|startOrRestart|startOrReload|startOrGracefulReload) flags="--update-env --only --env --silent" ;;
        init|ecosystem) flags="--json" ;;
        stop|delete) flags="--only --silent" ;;
        logs) flags="--lines --err --out --nostream --json --raw" ;;
        save) flags="--force" ;;
        describe) flags="--json" ;;
        list|ls|status) flags="--watch" ;;
      esac
      COMPREPLY=($(compgen -W "$flags" -- "$cur"))
      return ;;
  esac
  case "$verb" in
    stop|restart|reload|delete|describe|logs|pid|reset|flush|scale|sendSignal)
      local names
      names=$(pm jlist 2>/dev/null | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | sort -u)
      COMPREPLY=($(compgen -W "all $names" -- "$cur"))
      case "$verb" in stop|restart|reload|delete|describe) COMPREPLY+=($(compgen -f -- "$cur")) ;; esac ;;
    start|run|runtime|startOrRestart|startOrReload|startOrGracefulReload)
      COMPREPLY=($(compgen -f -- "$cur")) ;;
    help)
      COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
  esac
}
complete -o default -F _pm pm
