"""Versions, the 'live' alias and the release history, all kept in AWS: rollback and "nothing to
deploy" read AWS, not a local file.

A version is published only after its code and configuration passed the smoke test; its
description records what it is (deploy key, configuration key, variant, verify accuracy) and the
smoke test it passed, with the photo and the answer. The history is on the 'live' alias's
description, written by the same UpdateAlias call that moves 'live' (so the alias and its history
never disagree, and a second machine reads the same): the versions that were live, in order (a
rollback target appears again), and those rolled back from ("rejected": never made live again
without --force)."""

import hashlib
import json
from dataclasses import dataclass, field

from pipeline import params
from pipeline.deploy import limits
from pipeline.deploy.aws import pages

MARK = "clothes-serverless"  # versions and histories whose description carries this are this deployer's
ALIAS = "live"


@dataclass
class History:
    live: list[int] = field(default_factory=list)  # oldest first
    rejected: list[int] = field(default_factory=list)
    canary: "int | None" = None  # a version taking a share of the traffic under its alarms (canary.py)

    def text(self) -> str:
        """The alias description: as much of the history as fits (the oldest live entries go
        first, then the oldest rejections; rejections matter longer than old live entries)."""
        live, rejected = list(self.live), sorted(set(self.rejected))
        canary = {} if self.canary is None else {"canary": self.canary}
        while True:
            text = json.dumps({"by": MARK, "live": live, "rejected": rejected, **canary}, separators=(",", ":"))
            if len(text) <= limits.DESCRIPTION_CHARS:
                return text
            if len(live) > 2:
                live.pop(0)
            elif rejected:
                rejected.pop(0)
            else:
                live.pop(0)

    def made_live(self, version: int) -> "History":
        """After a deploy: a rejected version made live again (--force) is no longer rejected. A
        version equal to the last entry is not appended again (the history would fill with it)."""
        live = self.live if self.live[-1:] == [version] else [*self.live, version]
        return History(live, [v for v in self.rejected if v != version])

    def canary_started(self, version: int) -> "History":
        return History(self.live, self.rejected, canary=version)

    def canary_ended(self) -> "History":
        """A canary rolled back that nothing judged (too few requests, an AWS error): not rejected."""
        return History(self.live, self.rejected)

    def canary_rejected(self) -> "History":
        """A canary rolled back: 'live' never left its version, the canary's is rejected."""
        return History(self.live, sorted({*self.rejected, self.canary}))

    def rolled_back(self, current: int, target: int) -> "History":
        return History([*self.live, target], sorted({*self.rejected, current}))

    def previous(self, current: int, candidates: set[int]) -> "int | None":
        """Rollback's target: the last version before `current` that was live, was not rolled
        back from, and is still one of the candidates (published by this deployer)."""
        for version in reversed(self.live):
            if version != current and version not in self.rejected and version in candidates:
                return version
        return None


def read(alias: "dict | None") -> History:
    """The history on the alias; an alias made before there was one (or by hand) starts it with its version."""
    if alias is None:
        return History()
    try:
        meta = json.loads(alias.get("Description") or "")
    except ValueError:
        meta = None
    if isinstance(meta, dict) and meta.get("by") == MARK:
        canary = meta.get("canary")
        return History(
            [int(v) for v in meta.get("live", [])],
            [int(v) for v in meta.get("rejected", [])],
            int(canary) if canary is not None else None,
        )
    version = alias.get("FunctionVersion", "")
    return History([int(version)] if version.isdigit() else [])


def labels_digest(labels: list) -> str:
    return hashlib.sha256(json.dumps(labels).encode()).hexdigest()[:12]


def describe(
    key: str, config: str, variant: str, accuracy: "float | None", smoke: str, photo: str, top: str, labels: list
) -> str:
    """What a version is (its labels too: deploy refuses to replace a live model that answers with
    others), and the smoke test it passed (local or aws) with the photo and the answer, so rollback
    can check it again against its own answer."""
    meta = {"by": MARK, "key": key, "config": config, "variant": variant, "smoke": smoke, "photo": photo, "top": top}
    meta["accuracy"] = None if accuracy is None else round(accuracy, 4)
    # What fits in the description: the labels' names (deploy can then say which changed), else their
    # digest (a change is still refused, unnamed: the clothing set's 10 names and a photo's 40-character
    # name do not fit together), the smoke photo last (without it rollback checks today's verify answer,
    # which a retrained model may not give).
    no_photo = {k: v for k, v in meta.items() if k not in ("photo", "top")}
    by_name, by_digest = {"labels": labels}, {"labels_sha": labels_digest(labels)}
    for fitting in (meta | by_name, meta | by_digest, no_photo | by_name, no_photo | by_digest):
        text = json.dumps(fitting, separators=(",", ":"))
        if len(text) <= limits.DESCRIPTION_CHARS:
            break
    return text


def labels_changed(meta: dict, labels: list) -> "str | None":
    """How the labels a version answers with (its description) differ from these; None when they are
    the same or the version recorded none (published before labels were recorded)."""
    if "labels" in meta:
        was = meta["labels"]
        if was == labels:
            return None
        removed, added = [n for n in was if n not in labels], [n for n in labels if n not in was]
        if not removed and not added:
            return f"the same labels in another order: live {was}, this model {labels}"
        return ", ".join(f"{what} {names}" for what, names in (("removed", removed), ("added", added)) if names)
    if "labels_sha" in meta and meta["labels_sha"] != labels_digest(labels):
        return f"its labels (too long to record by name; digest {meta['labels_sha']}) are not this model's {labels}"
    return None


def recorded(version: dict) -> "dict | None":
    """What a version's description records, if this deployer published it (after its smoke test)."""
    try:
        meta = json.loads(version.get("Description") or "")
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("by") == MARK else None


def versions(lam, d: params.Deploy) -> list[dict]:
    """Every published version, oldest first (the listing is paginated, 50 a page)."""
    found = pages(lam.list_versions_by_function, "Versions", FunctionName=d.function_name)
    return sorted((v for v in found if v["Version"] != "$LATEST"), key=lambda v: int(v["Version"]))


def live_alias(lam, d: params.Deploy) -> "dict | None":
    try:
        return lam.get_alias(FunctionName=d.function_name, Name=ALIAS)
    except lam.exceptions.ResourceNotFoundException:
        return None


def live(lam, d: params.Deploy, alias: "dict | None") -> "dict | None":
    """The configuration of the version 'live' points to, or None."""
    if alias is None:
        return None
    return lam.get_function_configuration(FunctionName=d.function_name, Qualifier=alias["FunctionVersion"])


def rejected_with(published: list[dict], history: History, key: str, config: str) -> "str | None":
    """A version 'live' was rolled back from that has exactly this code and configuration."""
    for v in reversed(published):
        meta = recorded(v)
        if meta and int(v["Version"]) in history.rejected and (meta["key"], meta["config"]) == (key, config):
            return v["Version"]
    return None


def publish(
    lam, d: params.Deploy, code_sha: str, revision: str, description: str, before: list[dict]
) -> tuple[str, bool]:
    """The version, and whether it is new: Lambda hands back the last version instead of
    publishing one when neither code nor configuration changed since it."""
    # CodeSha256 and RevisionId, read before the smoke test: publish exactly the code and
    # configuration that were tested, or fail (something changed $LATEST meanwhile).
    revision_id = {"RevisionId": revision} if revision else {}
    version = lam.publish_version(
        FunctionName=d.function_name, CodeSha256=code_sha, Description=description, **revision_id
    )
    lam.get_waiter("published_version_active").wait(FunctionName=d.function_name, Qualifier=version["Version"])
    return version["Version"], version["Version"] not in {v["Version"] for v in before}


def move_alias(lam, d: params.Deploy, version: str, history: History, alias: "dict | None") -> str:
    """Point 'live' at the version and write the history in the same call. RoutingConfig is
    emptied: weights set by hand would keep sending part of the traffic to another version.
    RevisionId: a deploy or rollback that ran meanwhile makes this one fail, not vanish."""
    where = {"FunctionName": d.function_name, "Name": ALIAS, "FunctionVersion": version, "Description": history.text()}
    if alias is None:
        return lam.create_alias(**where)["AliasArn"]
    return lam.update_alias(**where, RoutingConfig={"AdditionalVersionWeights": {}}, RevisionId=alias["RevisionId"])[
        "AliasArn"
    ]


def rollback_target(lam, d: params.Deploy, current: str, history: History) -> "dict | None":
    """The previous live version that was not rolled back from and that this deployer published
    (so it passed its smoke test). With no history before the current version (an alias from
    before the history was kept): the newest older such version."""
    ours = {int(v["Version"]): v for v in versions(lam, d) if recorded(v)}
    target = history.previous(int(current), set(ours))
    if target is None and len(history.live) <= 1:
        target = max((v for v in ours if v < int(current) and v not in history.rejected), default=None)
    return ours.get(target)
