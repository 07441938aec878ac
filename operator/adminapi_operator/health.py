"""The rollout gate's health check: the endpoints asked for must answer 200."""
from __future__ import annotations

import urllib.error
import urllib.request

from .builders import HEALTH_PATHS


def check_endpoints(base_url: str, paths: tuple[str, ...] = HEALTH_PATHS, timeout: float = 3.0) -> str | None:
    """None when every endpoint answers 200, else what failed first (no response bodies: they may say too much)."""
    for path in paths:
        try:
            with urllib.request.urlopen(base_url + path, timeout=timeout) as response:
                if response.status != 200:
                    return f"{path} answered {response.status}"
        except urllib.error.HTTPError as e:
            return f"{path} answered {e.code}"
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            return f"{path} unreachable ({type(reason).__name__})"
    return None
