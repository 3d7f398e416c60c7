"""``python -m driftloop.stack up|down|status [ROOT]`` (what ``driftloop stack`` does)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.settings import Settings
from driftloop.stack.alerting import AlertingOptions
from driftloop.stack.lifecycle import stack_status, start_stack, stop_stack
from driftloop.stack.processes import StackError


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "status"
    root = Path(args[1]) if len(args) > 1 else Path.cwd()
    try:
        if command == "up":
            settings = Settings()
            start_stack(
                root,
                db_url=settings.stack_db or None,
                alerting_options=AlertingOptions(
                    alert_webhook=settings.stack_alert_webhook or None
                ),
            )
        elif command == "down":
            if not stop_stack(root):
                print("nothing to stop")
        elif command == "status":
            print(json.dumps(stack_status(root), indent=2))
        else:
            raise SystemExit(
                f"usage: python -m driftloop.stack up|down|status [ROOT] (got {command})"
            )
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
