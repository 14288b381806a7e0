"""A deployment's route: the engines that may answer it (built by lapis.serving.plans)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lapis.backends.base import Backend
    from lapis.dataplane.directory import DeploymentEntry


@dataclass(frozen=True, slots=True)
class Route:
    members: tuple[Any, ...]  # lapis.serving.balancer.Member, in no particular order
    direct: "Backend | None" = None  # the one engine, when nothing needs the balancer
    pooled: bool = False  # a pool serves it: member deployments admit, not the pooled one
    dep: "DeploymentEntry | None" = None  # what the route was built for (a stale route is rebuilt)
