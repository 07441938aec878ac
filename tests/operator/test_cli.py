import json

import pytest

from adminapi_operator.cli import parse_args

from .conftest import GUIDE_SPEC, Operator


def test_scope_is_one_namespace_several_or_all():
    assert parse_args(["-n", "a", "-n", "team-*"]).namespace == ["a", "team-*"]
    assert parse_args(["--all-namespaces"]).all_namespaces
    assert parse_args(["-A"]).log_format == "json"


@pytest.mark.parametrize("argv", [[], ["-A", "-n", "x"], ["-A", "--log-format", "xml"]])
def test_bad_arguments_get_a_clear_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "adminapi-operator: error:" in capsys.readouterr().err


@pytest.mark.kube
def test_logs_are_json(local_cluster, crd, kubeconfig, namespace, adminapis, tmp_path):
    operator = Operator(kubeconfig, namespace, tmp_path / "operator.log", log_format="json").start()
    try:
        adminapis.create("admin-api", GUIDE_SPEC)
        adminapis.wait_phase("admin-api", "Ready")
    finally:
        operator.stop()
    lines = [line for line in operator.log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    # Our own lines name the instance (its Events' reasons: Ready with the image); Kopf's line for every watch
    # event it hands to a handler is gone without --verbose.
    ours = [r for r in records if r.get("object", {}).get("name") == "admin-api"]
    assert any(r["message"].startswith("Ready: ") for r in ours), lines
    assert not [r for r in records if r["message"].startswith("Handler ") and r["message"].endswith(" succeeded.")]
    assert all({"message", "severity"} <= set(r) for r in records)
