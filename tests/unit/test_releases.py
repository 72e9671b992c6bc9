"""The release history and the version descriptions (pipeline/deploy/releases.py) as pure logic: what
the 'live' alias's description holds within 256 characters, what a version's records, and the choice of
rollback's target, with a hand-made Lambda client of a few methods (no AWS stand-in). The deploy tests
run the same code against moto; these are the fast ones mutation testing runs (docs/mutation.md). Each
expected text is written out here, its length counted by hand, never produced by the code under test."""

import dataclasses
import json
from types import SimpleNamespace

from pipeline import params
from pipeline.deploy import releases
from pipeline.deploy.releases import History
from support import ROOT

D = dataclasses.replace(params.load(ROOT / "params.yaml").deploy, function_name="fn-under-test")
OURS = '{"by":"clothes-serverless"'  # how every record of this deployer starts


# --- the alias's history -------------------------------------------------------------------------------


def test_a_history_of_exactly_256_characters_is_kept_whole_and_one_more_entry_drops_the_oldest():
    """'{"by":"clothes-serverless","live":[],"rejected":[]}' is 51 characters; 51 three-digit versions add
    51 x 3 + 50 commas = 203, rejection 17 two: 256, the description's limit, in the compact form
    (no spaces after ',' and ':'), and no "canary" key when there is none."""
    history = History(list(range(100, 151)), [17])
    text = OURS + ',"live":[' + ",".join(str(v) for v in range(100, 151)) + '],"rejected":[17]}'
    assert len(text) == 256
    # Kills text 25 (< 256), 14 and 16 (default separators), 6 (a "canary":null key): each drops an entry.
    assert history.text() == text
    longer = History(list(range(100, 152)), [17])  # 260: the oldest live entry goes, not the second oldest
    assert longer.text() == OURS + ',"live":[' + ",".join(str(v) for v in range(101, 152)) + '],"rejected":[17]}'
    with_canary = History([1, 2], [3], canary=4)
    assert with_canary.text() == OURS + ',"live":[1,2],"rejected":[3],"canary":4}'


def test_read_takes_only_this_deployers_history_and_starts_one_from_the_alias_s_version():
    assert releases.read(None) == History()
    ours = {"Description": OURS + ',"live":[1,2],"rejected":[3],"canary":4}', "FunctionVersion": "2"}
    assert releases.read(ours) == History([1, 2], [3], 4)
    # Ours without lists (a hand-edited description): empty lists, not a crash. Kills read 28, 30, 35, 37.
    assert releases.read({"Description": OURS + "}", "FunctionVersion": "2"}) == History([], [], None)
    # Someone else's JSON, a JSON list, no JSON: the alias's own version starts the history. Kills read 11
    # (a dict of someone else taken as ours; a list's .get), 45, 49-51 (the version's key), 54, 56.
    for description in ('{"by":"someone else","live":[9]}', "[1, 2]", "not json", "", None):
        assert releases.read({"Description": description, "FunctionVersion": "7"}) == History([7], [])
    # $LATEST (not a number) or no version at all: an empty history. Kills read 44, 46-48 (None.isdigit()),
    # 53 (History(None)), 55 (int("$LATEST")).
    assert releases.read({"FunctionVersion": "$LATEST"}) == History([], [])
    assert releases.read({}) == History([], [])


def test_made_live_appends_once_and_forgives_the_rejection():
    # Kills made_live 2 (always appended), 4 (live[+1:]: a one-entry history), 5 (live[-2:]).
    assert History([5]).made_live(5) == History([5], [])
    assert History([1, 2]).made_live(2) == History([1, 2], [])
    assert History([1, 2], [3, 4]).made_live(3) == History([1, 2, 3], [4])  # --force: 3 is forgiven
    assert History([1], [], canary=2).made_live(2) == History([1, 2], [], None)  # the canary made live


def test_rolled_back_and_ended_canaries_and_the_previous_live_version():
    assert History([1, 2, 3], [5]).rolled_back(3, 2) == History([1, 2, 3, 2], [3, 5])
    assert History([1], [4], canary=2).canary_ended() == History([1], [4], None)  # not rejected
    assert History([1], [4], canary=2).canary_rejected() == History([1], [2, 4], None)
    # previous: the last live before current, not rolled back from, still published by this deployer.
    h = History([1, 2, 3, 4, 5], [4])
    assert h.previous(5, {1, 2, 3, 4, 5}) == 3  # 4 was rolled back from
    assert h.previous(5, {1, 2, 4, 5}) == 2  # 3 is not ours (or deleted)
    assert h.previous(3, {1, 2, 3, 4, 5}) == 5  # the history is read newest first, current skipped
    assert History([5, 5]).previous(5, {5}) is None and History().previous(1, {1}) is None


# --- a version's description ---------------------------------------------------------------------------

# sha256 of '["hat", "shoes"]' (json.dumps' text), by `printf '%s' '["hat", "shoes"]' | sha256sum`: 7c2d63a37fee...
HAT_SHOES_SHA = "7c2d63a37fee"


def test_the_labels_digest_is_the_first_12_hex_digits_of_sha256():
    assert releases.labels_digest(["hat", "shoes"]) == HAT_SHOES_SHA  # kills labels_digest 3 ([:13])


def test_a_description_of_exactly_256_characters_keeps_everything_and_one_more_drops_the_photo():
    """With a 100-character key the whole record, labels by name, is 256 characters (written out below).
    With 101 it is 257 and the digest (27 characters for 24) does not fit either: the photo and its
    answer go, the labels stay by name (229)."""
    labels = ["hat", "shoes"]
    whole = (
        OURS + ',"key":"' + "k" * 100 + '","config":"c","variant":"full_int8","smoke":"aws","photo":"a.jpg",'
        '"top":"hat","accuracy":0.8123,"labels":["hat","shoes"]}'
    )
    assert len(whole) == 256
    # 0.812345 to 4 decimals. Kills describe 4-15 (renamed keys), 16-26 (the accuracy), 50 (< 256).
    assert releases.describe("k" * 100, "c", "full_int8", 0.812345, "aws", "a.jpg", "hat", labels) == whole
    shorter = (
        OURS + ',"key":"' + "k" * 101 + '","config":"c","variant":"full_int8","smoke":"aws","accuracy":0.8123,'
        '"labels":["hat","shoes"]}'
    )
    assert len(shorter) == 229
    # Kills describe 28-32 (which keys the photo-less record drops).
    assert releases.describe("k" * 101, "c", "full_int8", 0.8123, "aws", "a.jpg", "hat", labels) == shorter
    # One label of 250 characters: by digest (sha256 of its JSON text, `printf '["%s"]' x...x | sha256sum`).
    # A short key: the whole record with the digest (158); a key of 120: the photo-less one (248; 276 with it).
    long, sha = ["x" * 250], "a746748bfaf5"
    with_photo = (
        OURS + ',"key":"k","config":"c","variant":"full_int8","smoke":"aws","photo":"a.jpg","top":"hat",'
        f'"accuracy":null,"labels_sha":"{sha}"' + "}"
    )
    assert len(with_photo) == 158
    # No accuracy recorded: null. Kills describe 19 (round(None)) and 21.
    assert releases.describe("k", "c", "full_int8", None, "aws", "a.jpg", "hat", long) == with_photo
    digest = (
        OURS + ',"key":"' + "k" * 120 + '","config":"c","variant":"full_int8","smoke":"aws","accuracy":0.5,'
        f'"labels_sha":"{sha}"' + "}"
    )
    assert len(digest) == 248
    assert releases.describe("k" * 120, "c", "full_int8", 0.5, "aws", "a.jpg", "hat", long) == digest


def test_labels_changed_names_what_went_and_what_came():
    was = {"labels": ["hat", "shoes", "top"]}
    assert releases.labels_changed(was, ["hat", "shoes", "top"]) is None
    # Kills labels_changed 11 (or: one side empty read as "the same labels in another order").
    assert releases.labels_changed(was, ["hat", "shoes"]) == "removed ['top']"
    assert releases.labels_changed(was, ["hat", "shoes", "top", "bag"]) == "added ['bag']"
    assert releases.labels_changed(was, ["top", "hat", "shoes"]) == (
        "the same labels in another order: live ['hat', 'shoes', 'top'], this model ['top', 'hat', 'shoes']"
    )
    assert releases.labels_changed({"labels_sha": HAT_SHOES_SHA}, ["hat", "shoes"]) is None
    assert releases.labels_changed({"labels_sha": HAT_SHOES_SHA}, ["hat"]) == (
        f"its labels (too long to record by name; digest {HAT_SHOES_SHA}) are not this model's ['hat']"
    )
    assert releases.labels_changed({"key": "k"}, ["hat"]) is None  # published before labels were recorded


def test_recorded_is_only_this_deployers_description():
    assert releases.recorded({"Description": OURS + ',"key":"k"}'}) == {"by": "clothes-serverless", "key": "k"}
    # Kills recorded 10 (or True), 11 (or: someone else's dict; a JSON list's .get).
    for description in ('{"by":"someone else","key":"k"}', "[1]", "not json", "", None):
        assert releases.recorded({"Description": description}) is None


def version(number, key="k", config="c", ours=True) -> dict:
    by = "clothes-serverless" if ours else "someone else"
    return {"Version": str(number), "Description": json.dumps({"by": by, "key": key, "config": config})}


def test_rejected_with_finds_the_rolled_back_version_of_this_exact_code_and_configuration():
    published = [version(1), version(2, "k2"), version(3), version(4, ours=False), version(5, "k", "c2")]
    history = History([1, 2, 3], [3, 4, 5])
    assert releases.rejected_with(published, history, "k", "c") == "3"
    assert releases.rejected_with(published, history, "k2", "c") is None  # 2 was not rolled back from
    assert releases.rejected_with(published, history, "k", "c2") == "5"
    assert releases.rejected_with(published, History([1]), "k", "c") is None


# --- with a Lambda client: the listing, the alias, publishing -------------------------------------------


class NotFound(Exception):
    pass


class Lam:
    """The Lambda client's methods releases.py calls, over a list of versions; every call recorded."""

    exceptions = SimpleNamespace(ResourceNotFoundException=NotFound)

    def __init__(self, published: list, alias: "dict | None" = None, page: int = 50):
        self.published, self.alias, self.page, self.calls = published, alias, page, []

    def list_versions_by_function(self, **kwargs):  # only through its paginator
        raise AssertionError("a listing of versions must be paginated")

    def get_paginator(self, name):
        assert name == "list_versions_by_function"
        return self

    def paginate(self, **kwargs):
        self.calls.append(("list", kwargs))
        for start in range(0, len(self.published), self.page):
            yield {"Versions": self.published[start : start + self.page]}

    def get_alias(self, **kwargs):
        self.calls.append(("get_alias", kwargs))
        if self.alias is None:
            raise NotFound
        return self.alias

    def get_function_configuration(self, **kwargs):
        self.calls.append(("configuration", kwargs))
        return {"Version": kwargs["Qualifier"]}

    def create_alias(self, **kwargs):
        self.calls.append(("create_alias", kwargs))
        return {"AliasArn": "arn:created"}

    def update_alias(self, **kwargs):
        self.calls.append(("update_alias", kwargs))
        return {"AliasArn": "arn:updated"}

    def publish_version(self, **kwargs):
        self.calls.append(("publish", kwargs))
        return {"Version": "4"}

    def get_waiter(self, name):
        return SimpleNamespace(wait=lambda **kwargs: self.calls.append(("wait", name, kwargs)))


def test_versions_are_every_page_numbered_oldest_first_without_latest():
    published = [{"Version": "$LATEST"}] + [version(n) for n in (10, 9, 2, 1, 11, 3, 4, 5, 6, 7, 8)]
    lam = Lam(published, page=5)  # three pages; "10" sorts before "9" as text, not as a number
    assert [v["Version"] for v in releases.versions(lam, D)] == [str(n) for n in range(1, 12)]
    assert lam.calls == [("list", {"FunctionName": "fn-under-test"})]


def test_rollback_target_is_the_previous_live_version_this_deployer_published():
    published = [version(1), version(2), version(3, ours=False), version(4), version(5)]
    # The history says 1, 2, 3, 4, 5 were live, 4 rolled back from: 3 is not ours, so 2.
    assert releases.rollback_target(Lam(published), D, "5", History([1, 2, 3, 4, 5], [4])) == version(2)
    # No history before 5 (an alias from before it was kept): the newest older version of ours not rejected.
    assert releases.rollback_target(Lam(published), D, "5", History([5], [4])) == version(2)
    assert releases.rollback_target(Lam(published), D, "5", History([], [])) == version(4)
    assert releases.rollback_target(Lam(published), D, "1", History([1])) is None  # nothing older
    # A history of several entries, none a target: nothing, not a guess among older versions.
    assert releases.rollback_target(Lam(published), D, "5", History([4, 5], [4])) is None


def test_live_alias_live_version_and_moving_the_alias_with_its_history():
    assert releases.live_alias(Lam([]), D) is None
    alias = {"FunctionVersion": "3", "RevisionId": "r-1", "Description": ""}
    lam = Lam([], alias)
    assert releases.live_alias(lam, D) is alias
    assert lam.calls == [("get_alias", {"FunctionName": "fn-under-test", "Name": "live"})]
    assert releases.live(lam, D, None) is None
    assert releases.live(lam, D, alias) == {"Version": "3"}
    assert lam.calls[-1] == ("configuration", {"FunctionName": "fn-under-test", "Qualifier": "3"})
    history = History([1, 3])
    where = {"FunctionName": "fn-under-test", "Name": "live", "FunctionVersion": "3",
             "Description": OURS + ',"live":[1,3],"rejected":[]}'}  # fmt: skip
    assert releases.move_alias(lam, D, "3", history, None) == "arn:created"
    assert lam.calls[-1] == ("create_alias", where)
    # An existing alias: its weights emptied, and only if nobody moved it since it was read.
    assert releases.move_alias(lam, D, "3", history, alias) == "arn:updated"
    assert lam.calls[-1] == (
        "update_alias", {**where, "RoutingConfig": {"AdditionalVersionWeights": {}}, "RevisionId": "r-1"}
    )  # fmt: skip


def test_publish_names_the_tested_code_and_revision_and_says_if_the_version_is_new():
    lam = Lam([])
    assert releases.publish(lam, D, "sha-1", "rev-1", "described", [version(3)]) == ("4", True)
    assert lam.calls == [
        ("publish", {"FunctionName": "fn-under-test", "CodeSha256": "sha-1", "Description": "described",
                     "RevisionId": "rev-1"}),
        ("wait", "published_version_active", {"FunctionName": "fn-under-test", "Qualifier": "4"}),
    ]  # fmt: skip
    lam = Lam([])
    # No revision read: none sent. Lambda handing back version 4 again: not new.
    assert releases.publish(lam, D, "sha-1", "", "described", [version(3), version(4)]) == ("4", False)
    assert lam.calls[0] == ("publish", {"FunctionName": "fn-under-test", "CodeSha256": "sha-1",
                                        "Description": "described"})  # fmt: skip
