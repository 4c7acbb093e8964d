"""`harness scaffold`: the outage matrix of a registry as a folder of drills (real files, real CLI).

Fast tests generate, validate and compare folders; the slow one runs a few drills end to end on the
reference gateway, correct and with each defect switched on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from harness.core.model import DEFECTS

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "fixtures/registry/scaffold-basic.yaml"
SHIPPED = ROOT / "policy/fallback-registry.yaml"


def harness(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def scaffold(out: Path, *extra: str | Path, registry: Path = REGISTRY) -> subprocess.CompletedProcess[str]:
    return harness("scaffold", "--registry", registry, "--out", out, *extra)


def drills(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.yaml"))


def test_the_whole_matrix_validates_and_is_indexed(tmp_path: Path) -> None:
    done = scaffold(tmp_path / "m")
    assert done.returncode == 0, done.stdout + done.stderr
    names = drills(tmp_path / "m")
    # chat: all (8 families) + tenant acme, tenant globex, class regulated (6 each) = 26; assist has two
    # primaries, each all (8) + class regulated (6) = 28; extract has a weaker target: all (8 + capability)
    # + class regulated (6) = 15.
    assert len(names) == 69
    assert "chat--gpt-eu--tenant-globex--timeout.yaml" in names
    assert "assist--gpt-eu-2--all--kill-switch.yaml" in names
    index = (tmp_path / "m/README.md").read_text()
    assert [n for n in re.findall(r"\[([^]]+\.yaml)\]", index)] == names
    valid = harness("validate", *sorted((tmp_path / "m").glob("*.yaml")))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.count("ok  ") == 69


def test_a_drill_says_what_it_drills_and_references_the_registry(tmp_path: Path) -> None:
    assert scaffold(tmp_path, "--routes", "chat", "--effects", "5xx").returncode == 0
    text = (tmp_path / "chat--gpt-eu--tenant-globex--5xx.yaml").read_text()
    assert text.startswith("# Scaffolded by `harness scaffold`")
    assert "# Drills: route chat, primary gpt-eu, scope tenant-globex, effect 5xx." in text
    assert f"file: {os.path.relpath(REGISTRY, tmp_path)}" in text
    assert "match: {tenant: globex}" in text
    assert "routes:" not in text  # one primary of chat declared: the merge needs nothing more
    # assist runs on two primaries that both appear in its drills: the variant must be named.
    assert scaffold(tmp_path / "a", "--routes", "assist", "--effects", "5xx").returncode == 0
    assert "routes: {assist: {primary: gpt-eu-2}}" in (tmp_path / "a/assist--gpt-eu-2--all--5xx.yaml").read_text()


def test_same_inputs_give_the_same_bytes_and_the_seed_changes_only_seeds(tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert scaffold(tmp_path / name, "--seed", seed).returncode == 0
    files = drills(tmp_path / "a")
    assert files == drills(tmp_path / "b") == drills(tmp_path / "c")
    for f in [*files, "README.md"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    first = (tmp_path / "a" / files[0]).read_text().splitlines()
    other = (tmp_path / "c" / files[0]).read_text().splitlines()
    assert [i for i, (x, y) in enumerate(zip(first, other, strict=True)) if x != y] == \
        [i for i, line in enumerate(first) if line.startswith("seed: ")]


def test_routes_effects_and_max_limit_the_matrix_in_sorted_order(tmp_path: Path) -> None:
    assert scaffold(tmp_path / "r", "--routes", "chat", "--effects", "kill-switch,reset").returncode == 0
    assert drills(tmp_path / "r") == [
        "chat--gpt-eu--all--kill-switch.yaml", "chat--gpt-eu--all--reset.yaml",
        "chat--gpt-eu--class-regulated--reset.yaml", "chat--gpt-eu--tenant-acme--reset.yaml",
        "chat--gpt-eu--tenant-globex--reset.yaml"]
    assert scaffold(tmp_path / "all").returncode == 0
    assert scaffold(tmp_path / "m", "--max", "4").returncode == 0
    assert drills(tmp_path / "m") == drills(tmp_path / "all")[:4]


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert scaffold(tmp_path, "--max", "2").returncode == 0
    target = tmp_path / drills(tmp_path)[0]
    target.write_text("edited by hand\n")
    again = scaffold(tmp_path, "--max", "2")
    assert again.returncode == 2
    assert "would overwrite" in again.stdout and "--force" in again.stdout and "Traceback" not in again.stderr
    assert target.read_text() == "edited by hand\n"
    assert scaffold(tmp_path, "--max", "2", "--force").returncode == 0
    assert target.read_text().startswith("# Scaffolded")


@pytest.mark.parametrize(("args", "words"), [
    (["--routes", "chta"], "unknown route chta"),
    (["--effects", "5xx,flood"], "unknown effect flood"),
    (["--max", "0"], "--max 0"),
])
def test_bad_limits_are_usage_errors(tmp_path: Path, args: list[str], words: str) -> None:
    done = scaffold(tmp_path / "o", *args)
    assert done.returncode == 2
    assert words in done.stdout and "hint" in done.stdout or words in done.stdout
    assert not (tmp_path / "o").exists()


def test_a_missing_registry_is_an_input_error(tmp_path: Path) -> None:
    done = scaffold(tmp_path / "o", registry=tmp_path / "nope.yaml")
    assert done.returncode == 2
    assert "nope.yaml" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_gateway_config_is_drilled_instead_of_the_reference_gateway(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text("model_list: []\n")
    assert scaffold(tmp_path / "o", "--gateway-config", config, "--max", "1").returncode == 0
    text = (tmp_path / "o" / drills(tmp_path / "o")[0]).read_text()
    assert "gateway: {kind: litellm, config: ../proxy.yaml}" in text
    odd = tmp_path / "odd.yaml"
    odd.write_text("hello: world\n")
    done = scaffold(tmp_path / "p", "--gateway-config", odd)
    assert done.returncode == 2 and "cannot tell which gateway" in done.stdout


def test_a_capability_drill_only_where_a_target_is_weaker(tmp_path: Path) -> None:
    assert scaffold(tmp_path / "c", "--effects", "capability").returncode == 0
    # chat's and assist's targets lack nothing their primaries have: no capability drill for them.
    assert drills(tmp_path / "c") == ["extract--gpt-eu--all--capability.yaml"]
    text = (tmp_path / "c/extract--gpt-eu--all--capability.yaml").read_text()
    data = yaml.safe_load(text)
    # The primary declares no window: it gets 128k, so a prompt over it (refused for its size) can be drilled.
    assert data["providers"]["gpt-eu"]["capabilities"] == {"context_tokens": 128000}
    needs = [e for e in data["traffic"]["mix"] if set(e) - {"weight", "route", "tenant", "region",
                                                             "request_class", "data_class", "stream"}]
    # Over small-eu's 8k window; JSON small-eu cannot give; a control every target meets; over the primary's.
    assert [(e.get("input_tokens"), "response_format" in e) for e in needs] == [
        (9192, False), (None, True), (1000, False), (129000, False)]
    # triage accepts small-eu's losses; the needs traffic is of a class that does not.
    assert {e["request_class"] for e in needs} == {"chat"}
    assert {"capability_fit", "equivalence"} <= set(data["checks"])
    assert "routes:" not in text  # small-eu is first in the registry already
    assert "fallback_on" not in data["policy"]  # the registry does not fall back on context_length


def test_checks_are_a_flow_list_wrapped_over_lines(tmp_path: Path) -> None:
    assert scaffold(tmp_path, "--routes", "extract", "--effects", "capability").returncode == 0
    text = (tmp_path / "extract--gpt-eu--all--capability.yaml").read_text()
    block = text[text.index("checks: ["):].splitlines()
    assert len(block) > 1 and all(len(line) <= 100 for line in block)
    assert all(line.startswith(" " * len("checks: [")) for line in block[1:])
    assert yaml.safe_load(text)["checks"][-1] == "fault_effective"


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped registry is not in this checkout yet")
def test_the_shipped_registry_scaffolds_drills_that_validate(tmp_path: Path) -> None:
    done = scaffold(tmp_path, registry=SHIPPED)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(tmp_path.glob("*.yaml"))
    assert files
    valid = harness("validate", *files)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # The routes with a target that degrades something get a capability drill; in chat's, the weaker
    # targets (small-eu: context; mini-eu: tools, structured_output) come first, the class accepts no loss.
    assert [f.name for f in files if f.name.endswith("--capability.yaml")] == [
        "assist--gpt-eu--all--capability.yaml", "chat--gpt-eu--all--capability.yaml",
        "support--gpt-eu--all--capability.yaml"]
    chat = yaml.safe_load((tmp_path / "chat--gpt-eu--all--capability.yaml").read_text())
    assert [t["target"] for t in chat["policy"]["routes"]["chat"]["fallbacks"]][:3] == \
        ["small-eu", "mini-eu", "claude-eu"]
    assert "context_length" not in chat["policy"]["fallback_on"]
    assert {e["request_class"] for e in chat["traffic"]["mix"] if "response_format" in e} == {"no-degradation"}


# -- end to end: the reference gateway passes; each defect fails at least one drill -------------------------

# The drills run, cheapest first: a defect is caught when one of them fails (exit 1).
CAPABILITY = "extract--gpt-eu--all--capability.yaml"
E2E = ["chat--gpt-eu--all--5xx.yaml", "chat--gpt-eu--all--content-policy.yaml",
       "chat--gpt-eu--all--kill-switch.yaml", CAPABILITY]
# The defects that need requests with needs (a long prompt, response_format): the capability drill is
# tried first for them (the outage drills send plain chat only).
CAPABILITY_DEFECTS = ["capability-blind", "context-overflow-reroute", "drops-response-format"]


def _with_defect(folder: Path, name: str, defect: str) -> Path:
    text = (folder / name).read_text()
    assert "gateway: {kind: reference, " in text
    path = folder / f"defect-{defect}--{name}"
    path.write_text(text.replace("gateway: {kind: reference, ", f"gateway: {{kind: reference, defects: [{defect}], "))
    return path


def _first_failing(folder: Path, reports: Path, defect: str) -> tuple[str, str | None]:
    order = [CAPABILITY, *(n for n in E2E if n != CAPABILITY)] if defect in CAPABILITY_DEFECTS else E2E
    for name in order:
        done = harness("run", _with_defect(folder, name, defect), "--report-dir", reports)
        if done.returncode == 1:
            return defect, name
    return defect, None


@pytest.mark.slow
def test_scaffolded_drills_pass_on_the_reference_gateway_and_catch_each_defect(tmp_path: Path) -> None:
    folder = tmp_path / "drills"
    assert scaffold(folder, "--routes", "chat,extract", "--effects", "5xx,content-policy,kill-switch,capability",
                    ).returncode == 0
    reports = tmp_path / "reports"
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda n: (n, harness("run", folder / n, "--report-dir", reports)), E2E))
        for name, done in runs:
            assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
        caught = dict(pool.map(lambda d: _first_failing(folder, reports, d), DEFECTS))
    # Every defect of the reference gateway fails at least one scaffolded drill.
    assert {d: n for d, n in caught.items() if n is None} == {}
    assert {d: caught[d] for d in CAPABILITY_DEFECTS} == dict.fromkeys(CAPABILITY_DEFECTS, CAPABILITY)
