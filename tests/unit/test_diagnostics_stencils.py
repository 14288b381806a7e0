"""Stencils give, byte for byte, what shaping and encoding a request's record and workspace row give,
whatever the request holds; and they are made only for requests alike, and only when they reproduce it."""

from __future__ import annotations

import random

import msgspec
from msgspec.structs import fields, replace

from lapis.diagnostics.pending import Pending, for_event_hub, for_workspace
from lapis.diagnostics.shaping import request_log, workspace_row
from lapis.diagnostics.stencils import Stencils, generic, values
from lapis.observe.record import RequestRecord

ARM_ID = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/acct"
ODD = ["", "plain", 'quo"te', "back\\slash", "per%cent%s", "naïve ☃", "tab\tnew\nline", "987005", "x}987006}", "\u2028"]
SLY = ["a:987003,b", "@@lapis:time@@", "x:987001.5}"]  # look like holes: their kinds must keep the long way


def request(**changes) -> RequestRecord:
    base = dict(time=1_716_553_382.435, request_id="9d3a6e98-fc11-48d0-82cf-4de065c1a1f8", operation="chat",
                operation_name="ChatCompletions_Create", api_version="2024-10-21", status=200, streaming=False,
                duration_ms=1021.4, ttfb_ms=250.25, caller="key1", caller_ip="81.2.69.142", account_id="a1",
                account_name="acct", account_arm_id=ARM_ID, location="eastus", deployment="chat", model="gpt-4o-mini",
                model_version="2024-07-18", sku="Standard", prompt_tokens=12, completion_tokens=30)
    base.update(changes)
    return RequestRecord(**base)


def varied(picks: random.Random, kind: RequestRecord) -> RequestRecord:
    """A request like `kind` with its own per-request values (some of them odd); its tags and content,
    which are no part of a stencil's key, vary too (shaping must not use them)."""
    return replace(kind, tags={picks.choice(ODD): picks.choice(ODD)},
                   content=picks.choice([None, {"requestContent": picks.choice(ODD)}]),
                   time=picks.choice([picks.uniform(0, 4e9), float(picks.randint(0, 2**31)), 1e9 + 0.9999996]),
                   request_id=picks.choice([str(picks.random()), picks.choice(ODD)]),
                   caller_ip=picks.choice(["10.1.2.3", "2001:db8::1", "", "127.0.0.1", picks.choice(ODD)]),
                   duration_ms=picks.choice([picks.uniform(0, 1e5), 0.5, 1.5, 2.5, 0.0]),
                   ttfb_ms=picks.choice([picks.uniform(0, 1e4), 0.0005, 1e-9, 123456.7895]),
                   prompt_tokens=picks.randint(0, 10**7), completion_tokens=picks.choice([0, 987006, 2**40]),
                   cached_tokens=picks.randint(0, 5))


def kinds(picks: random.Random, count: int) -> list[RequestRecord]:
    """Requests differing in every other field, tags and content included."""
    out = []
    for _ in range(count):
        changes = {}
        for f in fields(RequestRecord):
            if f.name in ("status",):
                changes[f.name] = picks.choice([200, 400, 401, 429, 500, 503])
            elif f.name == "streaming":
                changes[f.name] = picks.random() < 0.5
            elif f.name == "caller":
                changes[f.name] = picks.choice(["key1", "key2", "", "0f5a-oid", picks.choice(ODD)])
            elif f.name == "tags":
                changes[f.name] = {picks.choice(ODD): picks.choice(ODD)}
            elif f.name == "content":
                changes[f.name] = picks.choice([None, {"requestContent": picks.choice(ODD)}])
            elif f.type in ("str", str):
                choices = SLY if picks.random() < 0.02 else ODD + ["ChatCompletions_Create", "eastus", ARM_ID]
                changes[f.name] = picks.choice(choices)
        out.append(request(**changes))
    return out


def test_stencils_give_the_generic_bytes_for_every_kind_of_request():
    picks = random.Random(6)
    stencils = Stencils()
    used = 0
    for kind in kinds(picks, 150):
        for category in ("RequestResponse", "Trace"):
            for _ in range(4):
                one = varied(picks, kind)
                own = values(one)
                found = stencils.get(one, category, own)
                if found is not None:
                    used += 1
                    assert (found[0].fill(own), found[1].fill(own)) == generic(one, category), (one, category)
    assert used > 500  # most kinds got their stencil at their second request (not the sly ones)


def test_a_request_of_another_kind_never_gets_anothers_stencil():
    stencils = Stencils()
    first = request()
    for _ in range(2):
        stencils.get(first, "RequestResponse", values(first))
    for name in ("deployment", "status", "api_version", "caller", "sku", "served_region", "account_arm_id"):
        other = replace(first, **{name: 403 if name == "status" else "other"})
        assert stencils.get(other, "RequestResponse", values(other)) is None, name  # seen once: the long way
    assert stencils.get(first, "Trace", values(first)) is None


def test_a_kind_gets_a_stencil_only_when_seen_again_and_only_if_it_reproduces_the_generic_path():
    stencils = Stencils(capacity=3)
    one = request()
    assert stencils.get(one, "RequestResponse", values(one)) is None
    assert stencils.get(one, "RequestResponse", values(one)) is not None
    sly = request(deployment="a:987003,b")  # a name that looks like a hole where a number goes
    for _ in range(3):
        assert stencils.get(sly, "RequestResponse", values(sly)) is None  # made, did not reproduce: never used
    for n in range(3):  # past capacity: all forgotten, and made again
        stencils.get(request(model=f"m{n}"), "RequestResponse", values(one))
    assert len(stencils.made) <= 3
    assert stencils.get(one, "RequestResponse", values(one)) is None


def test_values_of_other_types_go_the_long_way():
    assert values(request(prompt_tokens=12.0)) is None
    assert values(request(ttfb_ms=250)) is None
    assert values(request()) is not None


def test_pendings_hand_each_sink_the_generic_bytes():
    encode = msgspec.json.encode
    stencils = Stencils()
    made = [Pending(request(request_id=f"r{n}", prompt_tokens=n), "RequestResponse", False, stencils) for n in range(3)]
    with_text = Pending(request(content={"requestContent": '"hi"'}), "RequestResponse", True, stencils)
    denied = Pending(request(status=401, caller=""), "Audit", False, stencils)
    batch = [*made, with_text, denied, {"metricName": "x"}]
    assert for_event_hub(batch) == batch
    for item in made + [with_text, denied]:
        assert item.json() == encode(item.record())
    rows = for_workspace(batch)
    # the first of its kind goes the long way (as its record); the next ones come with their rows made
    assert rows[0] is made[0].record() and rows[1:3] == made[1:] and made[0].row() is None
    assert rows[3] is with_text.record() and rows[4] is denied.record() and rows[5] == {"metricName": "x"}
    for item in made[1:]:
        assert item.row() == encode(workspace_row(request_log(item.request))[1])
