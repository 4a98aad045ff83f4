"""Task-result payloads (API-REFERENCE §3 and §5): the three accepted shapes, validation,
and the status table."""

from __future__ import annotations

import copy

import pytest

from hidream_models.exceptions import HiDreamAPIError
from hidream_models.payloads import (
    PayloadError,
    SubTaskResult,
    TaskResultPayload,
    is_final_status,
    is_success_status,
    loads_json,
    parse_task_result,
)

DONE = {
    "sub_task_id": "94ecd4e4-7d90-4daa-8edb-f3ee02fafa19",
    "task_status": 1,
    "task_completion": 1,
    "image": "https://hidreamai.com/results/p_1.jpg",
    "description": "",
}
RUNNING = {
    "sub_task_id": "b2",
    "task_status": 2,
    "task_completion": 0.4,
    "image": "",
    "description": "",
}
TASK_ID = "97004e6a-5d2b-11ee-abe3-3a8d18c35963"


def envelope(result, code=0, message="Success", request_id="req-1"):
    return {"code": code, "message": message, "request_id": request_id, "result": result}


def bare(items, **extra):
    return {"task_id": TASK_ID, "sub_task_results": items, **extra}


def older(items):
    return {"main_task_id": TASK_ID, "sub_task_results": items}


SHAPES = {
    "envelope": lambda items: envelope(bare(items)),
    "bare-result": bare,
    "main_task_id": older,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_three_callback_shapes_are_accepted(shape):
    body = SHAPES[shape]([copy.deepcopy(DONE), copy.deepcopy(RUNNING)])
    payload = parse_task_result(body)
    assert isinstance(payload, TaskResultPayload)
    assert payload.task_id == TASK_ID
    assert [s.sub_task_id for s in payload.sub_task_results] == [DONE["sub_task_id"], "b2"]
    first, second = payload.sub_task_results
    assert isinstance(first, SubTaskResult)
    assert first.task_status == 1 and first.is_final
    assert first.task_completion == 1.0
    assert first.image == DONE["image"]
    assert first.description == ""
    assert second.task_status == 2 and not second.is_final
    assert second.task_completion == pytest.approx(0.4)


def test_bare_result_without_task_id_gives_empty_task_id():
    payload = parse_task_result({"sub_task_results": [dict(DONE)]})
    assert payload.task_id == ""
    assert len(payload.sub_task_results) == 1


def test_empty_sub_task_results_list_is_accepted():
    assert parse_task_result(bare([])).sub_task_results == ()


def test_unknown_fields_are_kept_in_raw():
    item = {**DONE, "width": 1024, "seed": 77, "extra": {"nested": [1, 2]}}
    body = envelope(bare([item], region="cn", cost={"credits": 3}))
    payload = parse_task_result(body)
    sub = payload.sub_task_results[0]
    assert sub.raw["seed"] == 77
    assert sub.raw["width"] == 1024
    assert sub.raw["extra"] == {"nested": [1, 2]}
    assert payload.raw["region"] == "cn"
    assert payload.raw["cost"] == {"credits": 3}


def test_missing_optional_fields_get_defaults_and_nulls_become_empty():
    payload = parse_task_result(
        bare(
            [
                {"sub_task_id": "a", "task_status": 0},
                {"sub_task_id": "b", "task_status": 3, "image": None, "description": None},
            ]
        )
    )
    a, b = payload.sub_task_results
    assert (a.task_completion, a.image, a.description) == (0.0, "", "")
    assert (b.image, b.description) == ("", "")


@pytest.mark.parametrize(
    ("given", "expected"), [(1.7, 1.0), (-0.3, 0.0), (0.42, 0.42), ("0.5", 0.5), (100, 1.0)]
)
def test_completion_is_clamped_to_0_1(given, expected):
    payload = parse_task_result(bare([{**RUNNING, "task_completion": given}]))
    assert payload.sub_task_results[0].task_completion == pytest.approx(expected)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[DONE], "sub_task_results", None, 42, True])
def test_non_objects_are_refused(body):
    with pytest.raises(PayloadError) as info:
        parse_task_result(body)
    text = str(info.value)
    assert "object" in text and "sub_task_results" in text
    assert type(body).__name__ in text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"task_id": TASK_ID}, id="bare"),
        pytest.param({"main_task_id": TASK_ID}, id="older"),
        pytest.param(envelope({"task_id": TASK_ID}), id="envelope"),
        pytest.param({}, id="empty"),
    ],
)
def test_missing_sub_task_results_is_refused(body):
    with pytest.raises(PayloadError, match="sub_task_results"):
        parse_task_result(body)


@pytest.mark.parametrize("value", ["done", 1.5, True, False, None, [1], {"v": 1}])
def test_non_integer_or_bool_task_status_is_refused(value):
    with pytest.raises(PayloadError) as info:
        parse_task_result(bare([{**DONE, "task_status": value}]))
    assert "task_status" in str(info.value)


def test_error_text_names_the_position_of_the_bad_item():
    with pytest.raises(PayloadError) as info:
        parse_task_result(bare([dict(DONE), {**RUNNING, "task_status": "soon"}]))
    assert "sub_task_results.1.task_status" in str(info.value)
    assert "sub_task_results.0" not in str(info.value)


def test_missing_sub_task_id_is_refused():
    item = {k: v for k, v in DONE.items() if k != "sub_task_id"}
    with pytest.raises(PayloadError, match="sub_task_id"):
        parse_task_result(bare([item]))


@pytest.mark.parametrize("value", ["not a list", {"sub_task_id": "a"}, 3])
def test_sub_task_results_must_be_a_list(value):
    with pytest.raises(PayloadError, match="sub_task_results"):
        parse_task_result(bare(value))


@pytest.mark.parametrize("result", [None, [], "ok", 5])
def test_envelope_result_must_be_an_object(result):
    with pytest.raises(PayloadError, match="result"):
        parse_task_result(envelope(result))


@pytest.mark.parametrize("code", ["0", True, None, 0.0])
def test_envelope_code_must_be_an_integer(code):
    with pytest.raises(PayloadError, match="code"):
        parse_task_result(envelope(bare([dict(DONE)]), code=code))


def test_envelope_with_non_zero_code_raises_api_error():
    body = envelope(None, code=1001, message="template not found", request_id="rid-42")
    with pytest.raises(HiDreamAPIError) as info:
        parse_task_result(body)
    exc = info.value
    assert (exc.code, exc.message, exc.request_id) == (1001, "template not found", "rid-42")
    assert "1001" in str(exc) and "template not found" in str(exc) and "rid-42" in str(exc)


def test_envelope_with_non_zero_code_wins_over_a_valid_result():
    body = envelope(bare([dict(DONE)]), code=-5, message="quota")
    with pytest.raises(HiDreamAPIError) as info:
        parse_task_result(body)
    assert info.value.code == -5


def test_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)


# -- the task_status table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (0, False),
        (2, False),
        (1, True),
        (3, True),
        (4, True),
        (1004, True),
        (1005, True),
        (1006, True),
        (7, False),
        (1003, False),
        (1007, False),
        (-1, False),
    ],
)
def test_is_final_status_table(status, final):
    assert is_final_status(status) is final
    sub = parse_task_result(bare([{**DONE, "task_status": status}])).sub_task_results[0]
    assert sub.is_final is final


@pytest.mark.parametrize(("status", "success"), [(1, True), (0, False), (3, False), (1004, False)])
def test_only_status_1_is_success(status, success):
    assert is_success_status(status) is success


# -- loads_json: what can be stored, and the walk skipped when nothing needs it --------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": "plain \\u00e9t\\u00e9", "b": ["x"]}', {"a": "plain été", "b": ["x"]}),
        (b'{"a": "nul\\u0000here"}', {"a": "nul\ufffdhere"}),
        (b'{"a\\u0000": ["\\ud83d"]}', {"a\ufffd": ["\ufffd"]}),
        # A surrogate encoded as UTF-8 bytes: json.loads lets it through.
        (b'{"a": "lone \xed\xa0\x80 surrogate"}', {"a": "lone \ufffd surrogate"}),
        # UTF-16, which json.loads also reads, with a \u0000 escape inside.
        ('{"a": "x\\u0000y"}'.encode("utf-16"), {"a": "x\ufffdy"}),
        ('{"a": "x\\u0000y"}', {"a": "x\ufffdy"}),
        ("{\"a\": \"str \ud83d\"}", {"a": "str \ufffd"}),
    ],
)
def test_loads_json_keeps_only_storable_strings(raw, expected):
    assert loads_json(raw) == expected


def test_loads_json_leaves_an_ordinary_body_unwalked(monkeypatch):
    # The common case (no escape, no NUL, no 0xED byte) costs no walk over the data.
    from hidream_models import payloads

    def walked(value):
        raise AssertionError("strip_nul ran on a body that cannot need it")

    monkeypatch.setattr(payloads, "strip_nul", walked)
    raw = b'{"code": 0, "result": {"task_id": "t", "sub_task_results": [{"image": "x"}]}}'
    assert loads_json(raw)["result"]["task_id"] == "t"
    assert loads_json("é".join(['{"a": "', '"}']).encode()) == {"a": "é"}


def test_loads_json_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        loads_json(b'{"a": NaN}')


@pytest.mark.parametrize("text", ["1e999", "-1e999", "1.5e400"])
def test_loads_json_refuses_a_number_too_large_for_a_float(text):
    with pytest.raises(ValueError, match="too large"):
        loads_json(f'{{"score": {text}}}'.encode())
    assert loads_json(b'{"score": 1e300}') == {"score": 1e300}
