"""Choosing llama.cpp's CPU code paths at run time (engines/cpu.py), on any CPU."""

import json

import pytest

from server.engines import cpu

AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


def test_cpuinfo_parsing():
    amx, epyc, arm = (cpu.parse_cpuinfo(t) for t in (AMX_CPUINFO, EPYC_CPUINFO, ARM_CPUINFO))
    assert amx.model == "Intel(R) Xeon(R) Platinum 8481C" and amx.has_amx
    assert epyc.model == "AMD EPYC 9B14" and not epyc.has_amx and "avx512f" in epyc.flags
    assert arm.model == "unknown CPU" and "asimd" in arm.flags and not arm.has_amx
    assert amx.signature() != epyc.signature()


def test_read_cpu_honours_a_fake_cpuinfo(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(AMX_CPUINFO)
    monkeypatch.setenv("DMR_CPUINFO", str(path))
    cpu.read_cpu.cache_clear()
    try:
        assert cpu.read_cpu().has_amx
    finally:
        cpu.read_cpu.cache_clear()


@pytest.mark.parametrize("setting", ["on", "off"])
def test_explicit_settings_are_obeyed(setting):
    for text in (AMX_CPUINFO, EPYC_CPUINFO):
        d = cpu.decide(setting, cpu=cpu.parse_cpuinfo(text), build="b",
                       verdicts=cpu.Verdicts(None), supervised=True)
        assert (d.extra_buffers, d.probe) == (setting, False)


def test_auto_in_process_turns_them_off_on_amx_only():
    amx, epyc = cpu.parse_cpuinfo(AMX_CPUINFO), cpu.parse_cpuinfo(EPYC_CPUINFO)
    off = cpu.decide("auto", cpu=amx, build="b", verdicts=cpu.Verdicts(None), supervised=False)
    on = cpu.decide("auto", cpu=epyc, build="b", verdicts=cpu.Verdicts(None), supervised=False)
    assert (off.extra_buffers, off.probe) == ("off", False) and "AMX" in off.reason
    assert (on.extra_buffers, on.probe) == ("on", False)


def test_auto_with_runners_probes_once_and_remembers(tmp_path):
    amx, epyc = cpu.parse_cpuinfo(AMX_CPUINFO), cpu.parse_cpuinfo(EPYC_CPUINFO)
    verdicts = cpu.Verdicts(tmp_path / "cpu-verdicts.json")
    first = cpu.decide("auto", cpu=amx, build="b1", verdicts=verdicts, supervised=True)
    assert (first.extra_buffers, first.probe) == ("on", True)
    crashed = cpu.probe_crashed(amx, "b1", verdicts, "signal 11, SIGSEGV")
    assert crashed.extra_buffers == "off" and "llama.cpp#20824" in crashed.reason
    again = cpu.decide("auto", cpu=amx, build="b1", verdicts=verdicts, supervised=True)
    assert (again.extra_buffers, again.probe) == ("off", False)
    assert "remembered" in again.reason and "SIGSEGV" in again.reason
    # Another build (a fixed llama.cpp) or another CPU is probed afresh.
    assert cpu.decide("auto", cpu=amx, build="b2", verdicts=verdicts, supervised=True).probe
    assert cpu.decide("auto", cpu=epyc, build="b1", verdicts=verdicts, supervised=True).probe
    cpu.probe_passed(epyc, "b1", verdicts)
    kept = cpu.decide("auto", cpu=epyc, build="b1", verdicts=verdicts, supervised=True)
    assert (kept.extra_buffers, kept.probe) == ("on", False)
    stored = json.loads((tmp_path / "cpu-verdicts.json").read_text())
    assert sorted(v["extra_buffers"] for v in stored.values()) == ["off", "on"]


def test_a_damaged_verdict_file_only_means_probing_again(tmp_path):
    path = tmp_path / "cpu-verdicts.json"
    path.write_text("{not json")
    d = cpu.decide("auto", cpu=cpu.parse_cpuinfo(EPYC_CPUINFO), build="b",
                   verdicts=cpu.Verdicts(path), supervised=True)
    assert d.probe


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="auto, on, off"):
        cpu.decide("maybe", cpu=cpu.parse_cpuinfo(EPYC_CPUINFO), build="b",
                   verdicts=cpu.Verdicts(None), supervised=True)


def test_build_id_names_the_installed_llama_cpp():
    assert cpu.build_id().startswith("llama-cpp-python ")
    assert ".so" in cpu.build_id()
