"""SnapStart as the Lambda-like proxy plays it (lambda_proxy.py): moto 5.2 takes no SnapStart setting and
reports it Off everywhere. Here a function's SnapStart.ApplyOn from CreateFunction and
UpdateFunctionConfiguration is kept; a version published while it is PublishedVersions reads Pending once
(Lambda initializing it and taking the snapshot), then Active with OptimizationStatus On, as AWS answers;
$LATEST reports the setting with OptimizationStatus Off (snapshots are of versions only)."""


class SnapStarts:
    def __init__(self, proxy):
        self.proxy = proxy
        self.apply_on = {}  # function -> its SnapStart.ApplyOn as last set
        self.snapshotted = {}  # (function, version) -> the ApplyOn it was published under

    def record(self, name: str, spec: dict) -> None:
        if "SnapStart" in (spec or {}):
            self.apply_on[name] = spec["SnapStart"].get("ApplyOn", "None")

    def published(self, name: str) -> None:
        """Before PublishVersion: the version it will make is snapshotted (Pending at its first read)."""
        if self.apply_on.get(name) != "PublishedVersions":
            return
        lam = self.proxy.lam
        try:
            pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
            numbers = [int(v["Version"]) for page in pages for v in page["Versions"] if v["Version"] != "$LATEST"]
        except lam.exceptions.ResourceNotFoundException:
            return
        version = str(max(numbers, default=0) + 1)
        self.snapshotted[(name, version)] = "PublishedVersions"
        self.proxy.pending_reads[(name, version)] += 1

    def patch(self, name: str, qualifier: str) -> dict:
        if name not in self.apply_on:
            return {}
        if qualifier == "$LATEST":
            return {"SnapStart": {"ApplyOn": self.apply_on[name], "OptimizationStatus": "Off"}}
        version = qualifier
        if not version.isdigit():  # an alias: the version it points to
            try:
                version = self.proxy.lam.get_alias(FunctionName=name, Name=qualifier)["FunctionVersion"]
            except self.proxy.lam.exceptions.ResourceNotFoundException:
                return {}
        on = self.snapshotted.get((name, version)) == "PublishedVersions"
        return {
            "SnapStart": {"ApplyOn": "PublishedVersions" if on else "None", "OptimizationStatus": "On" if on else "Off"}
        }
