from adminapi_operator.reconcile import contains, job_state
from adminapi_operator.status import Progress, config_error, merge_conditions, workload_status


def deployment(replicas=3, generation=2, observed=2, current=3, updated=3, ready=3, available=3, reason=None):
    conditions = [{"type": "Progressing", "status": "False" if reason else "True", "reason": reason or "NewReplicaSetAvailable"}]
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": current, "updatedReplicas": updated,
                       "readyReplicas": ready, "availableReplicas": available, "conditions": conditions}}


def test_complete_only_when_every_replica_runs_the_new_template():
    assert Progress.of(deployment()).complete
    assert not Progress.of(deployment(observed=1)).complete  # the controller has not seen the change yet
    assert not Progress.of(deployment(updated=2)).complete
    assert not Progress.of(deployment(current=4, ready=4, available=4)).complete  # an old pod still runs
    assert not Progress.of(deployment(available=2)).complete
    assert not Progress.of(None).complete


def test_a_stale_deadline_does_not_count():
    assert Progress.of(deployment(ready=2, reason="ProgressDeadlineExceeded")).deadline_exceeded
    assert not Progress.of(deployment(observed=1, reason="ProgressDeadlineExceeded")).deadline_exceeded


def test_phases():
    assert workload_status(Progress.of(deployment()), 2)["phase"] == "Ready"
    assert workload_status(Progress.of(deployment(ready=1)), 2)["phase"] == "Progressing"
    assert workload_status(Progress.of(deployment(ready=1, reason="ProgressDeadlineExceeded")), 2)["phase"] == "Failed"
    invalid = workload_status(Progress.of(None), 2, invalid="bad")
    assert invalid["phase"] == "Invalid"
    assert {c["type"]: c["status"] for c in invalid["conditions"]} == {
        "Ready": "False", "Progressing": "False", "Degraded": "True", "RolledOut": "False"}


def by_type(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_held_status_follows_the_pods():
    """Issue 9: after a failed rollout Ready was True whatever the pods did (seen: 0/1 ready and Ready=True)."""
    down = workload_status(Progress.of(deployment(replicas=1, current=1, ready=0, available=0)), 3,
                           held=("RolledBack", "rolled back"))
    assert down["phase"] == "RolledBack"
    assert by_type(down) == {"Ready": ("False", "PodsNotReady"), "Progressing": ("True", "RollingBack"),
                             "Degraded": ("True", "RolledBack"), "RolledOut": ("False", "RolledBack")}
    up = workload_status(Progress.of(deployment(replicas=1, current=1, updated=1, ready=1, available=1)), 3,
                         held=("RolledBack", "rolled back"))
    assert by_type(up)["Ready"] == ("True", "DeploymentAvailable") and by_type(up)["Degraded"][0] == "True"


def test_scaled_to_zero_is_a_state_not_a_failure():
    zero = workload_status(Progress.of(deployment(replicas=0, current=0, updated=0, ready=0, available=0)), 4)
    assert zero["phase"] == "ScaledToZero"
    assert by_type(zero) == {"Ready": ("False", "ScaledToZero"), "Progressing": ("False", "ScaledToZero"),
                             "Degraded": ("False", "AsExpected"), "RolledOut": ("True", "RolledOut")}


def test_ready_counts_only_the_new_template():
    """Issue 11 item 5: the gate's message counted the old ReplicaSet's pods ("1/1 ready" for a never-ready one)."""
    pods = [{"metadata": {"labels": {"aistreams.io/template-hash": "old"}}, "status": {"conditions": [
                {"type": "Ready", "status": "True"}]}},
            {"metadata": {"labels": {"aistreams.io/template-hash": "new"}}, "status": {"conditions": [
                {"type": "Ready", "status": "False"}]}}]
    progress = Progress.of(deployment(replicas=1, current=2, updated=1, ready=1, available=1), pods, "new")
    assert progress.ready == 0 and progress.describe().startswith("0/1 ready")
    assert progress.pods == 2


def waiting_pod(reason, message, template="new", ready="False"):
    return {"metadata": {"name": "p", "labels": {"aistreams.io/template-hash": template}},
            "status": {"conditions": [{"type": "Ready", "status": ready}], "containerStatuses": [
                {"name": "admin-api", "state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_a_pod_the_kubelet_cannot_configure():
    """What the kubelet says of a missing Secret, ConfigMap or key; the runtime's own CreateContainerError is not it."""
    said = config_error([waiting_pod("CreateContainerConfigError", 'secret "db" not found')], "new")
    assert said == 'pod p, container admin-api: CreateContainerConfigError: secret "db" not found'
    for message in ("couldn't find key url in Secret ns/db", 'configmap "settings" not found',
                    "couldn't find key a in ConfigMap ns/settings"):
        assert config_error([waiting_pod("CreateContainerError", message)], "new")
    assert not config_error([waiting_pod("CreateContainerError", "failed to create containerd task: EOF")], "new")
    assert not config_error([waiting_pod("ImagePullBackOff", 'pulling "db": not found')], "new")
    assert not config_error([waiting_pod("CreateContainerConfigError", "x", template="old")], "new")
    assert not config_error([waiting_pod("CreateContainerConfigError", "x", ready="True")], "new")


def test_a_pod_that_cannot_be_configured_is_said_without_a_rollout():
    pods = [waiting_pod("CreateContainerConfigError", 'secret "db" not found')]
    progress = Progress.of(deployment(replicas=1, current=1, updated=1, ready=0, available=0), pods, "new")
    status = workload_status(progress, 2)
    assert status["phase"] == "Progressing" and 'secret "db" not found' in status["message"]
    assert by_type(status) == {"Ready": ("False", "ConfigError"), "Progressing": ("True", "ConfigError"),
                               "Degraded": ("True", "ConfigError"), "RolledOut": ("False", "ConfigError")}
    held = workload_status(progress, 2, held=("RolledBack", "rolled back"))
    assert held["phase"] == "RolledBack" and by_type(held)["Ready"] == ("False", "ConfigError")
    assert 'secret "db" not found' in held["message"]


def test_transition_time_moves_only_when_status_flips():
    old = [{"type": "Ready", "status": "True", "reason": "A", "lastTransitionTime": "t0"},
           {"type": "Extra", "status": "True", "lastTransitionTime": "t0"}]
    same = merge_conditions(old, [{"type": "Ready", "status": "True", "reason": "B"}], "t1")
    assert same[0]["lastTransitionTime"] == "t0" and same[0]["reason"] == "B"
    assert same[1]["type"] == "Extra"  # conditions we do not write are kept
    flipped = merge_conditions(old, [{"type": "Ready", "status": "False", "reason": "C"}], "t1")
    assert flipped[0]["lastTransitionTime"] == "t1"


def test_contains_ignores_server_defaults_but_not_our_fields():
    live = {"spec": {"ports": [{"port": 1, "protocol": "TCP", "nodePort": 3}], "clusterIP": "10.0.0.1"}}
    assert contains(live, {"spec": {"ports": [{"port": 1, "protocol": "TCP"}]}})
    assert not contains(live, {"spec": {"ports": [{"port": 2}]}})
    assert not contains(live, {"spec": {"ports": [{"port": 1}, {"port": 2}]}})
    assert contains({"metadata": {}}, {"metadata": {"annotations": {}}})  # empty maps are omitted by the server
    assert not contains({"metadata": {}}, {"metadata": {"annotations": {"a": "b"}}})


def test_contains_takes_a_missing_field_for_the_zero_value_the_server_leaves_out():
    probe = {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSeconds": 5}
    assert contains(probe, {**probe, "initialDelaySeconds": 0})
    assert contains([{"name": "EMPTY"}], [{"name": "EMPTY", "value": ""}])
    assert not contains({}, {"initialDelaySeconds": 1}) and not contains([{"name": "X"}], [{"name": "X", "value": "x"}])
    assert not contains({}, {"automountServiceAccountToken": False})  # a pointer: stored when false, removed if missing


def test_contains_compares_quantities_as_the_server_stores_them():
    """Issue 9: `1000m` stored as `1` looked like drift: an apply and a DriftRepaired Event every poll."""
    assert contains({"cpu": "1", "memory": "1Gi"}, {"cpu": "1000m", "memory": "1024Mi"})
    assert contains({"cpu": "500m"}, {"cpu": "0.5"}) and contains({"cpu": "2"}, {"cpu": 2})
    assert not contains({"cpu": "1"}, {"cpu": "2"})
    assert not contains({"image": "a:1"}, {"image": "a:2"}) and not contains({"flag": True}, {"flag": 1})


def test_job_state():
    assert job_state(None) is None
    assert job_state({"status": {"active": 1}}) is None
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert job_state({"status": {"conditions": [{"type": "FailureTarget", "status": "True"},
                                                {"type": "Failed", "status": "True"}]}}) == "Failed"
