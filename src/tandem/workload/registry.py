"""Embedded workloads by name, and loading a workload from a name or a path.

Embedded (data shipped inside the package, licenses beside it under ``workload/data``):

- ``azure-conv``, ``azure-code``: Azure LLM inference trace 2023 (CC-BY-4.0, Patel et al.)
- ``mooncake-conv``: Mooncake FAST'25 conversation trace (Apache-2.0, Qin et al.)
- ``servegen-r1``: ServeGen DeepSeek-R1 reasoning workload, sampled (Apache-2.0, Xiang et al.)

A path is read by its format: ``*.jsonl[.gz]`` as Mooncake; ``*.csv[.gz]`` as Azure or
BurstGPT by its header; a directory of ``chunk-<id>-trace.csv`` files as ServeGen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tandem.errors import InputFormatError, UnknownNameError
from tandem.workload._rows import open_text
from tandem.workload.request import Workload
from tandem.workload.traces import read_azure, read_burstgpt, read_mooncake


@dataclass(frozen=True)
class EmbeddedWorkload:
    name: str
    description: str
    license: str
    load: Callable[[bool], Workload]


def _data(*parts: str) -> Path:
    return Path(str(resources.files("tandem.workload").joinpath("data", *parts)))


def _servegen(skip_bad: bool) -> Workload:
    from tandem.workload.servegen import load_servegen

    return load_servegen(None, name="servegen-r1")


EMBEDDED: dict[str, EmbeddedWorkload] = {
    w.name: w
    for w in (
        EmbeddedWorkload(
            "azure-conv",
            "Azure LLM inference 2023, conversation: 19,366 requests in 1 h",
            "CC-BY-4.0",
            lambda skip: read_azure(
                _data("azure_llm_2023", "AzureLLMInferenceTrace_conv.csv.gz"),
                name="azure-conv",
                skip_bad=skip,
            ),
        ),
        EmbeddedWorkload(
            "azure-code",
            "Azure LLM inference 2023, code: 8,819 requests in 1 h",
            "CC-BY-4.0",
            lambda skip: read_azure(
                _data("azure_llm_2023", "AzureLLMInferenceTrace_code.csv.gz"),
                name="azure-code",
                skip_bad=skip,
            ),
        ),
        EmbeddedWorkload(
            "mooncake-conv",
            "Mooncake (Kimi) FAST'25 conversation trace: 12,031 requests in 1 h",
            "Apache-2.0",
            lambda skip: read_mooncake(
                _data("mooncake_fast25", "conversation_trace.jsonl.gz"),
                name="mooncake-conv",
                skip_bad=skip,
            ),
        ),
        EmbeddedWorkload(
            "servegen-r1",
            "ServeGen DeepSeek-R1 reasoning workload, sampled (long outputs)",
            "Apache-2.0",
            _servegen,
        ),
    )
}


def _read_path(path: Path, skip_bad: bool) -> Workload:
    if path.is_dir():
        if any(path.glob("chunk-*-trace.csv")):
            from tandem.workload.servegen import load_servegen

            return load_servegen(path, name=path.name)
        raise InputFormatError(path, None, None, "directory without chunk-<id>-trace.csv files")
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".jsonl":
        return read_mooncake(path, skip_bad=skip_bad)
    if kind == ".csv":
        with open_text(path) as fh:
            header = fh.readline()
        if header.startswith("TIMESTAMP"):
            return read_azure(path, skip_bad=skip_bad)
        if header.startswith("Timestamp"):
            return read_burstgpt(path, skip_bad=skip_bad)
        raise InputFormatError(
            path,
            1,
            None,
            "unknown CSV header; expected Azure (TIMESTAMP,...) or BurstGPT (Timestamp,Model,...)",
        )
    raise InputFormatError(
        path,
        None,
        None,
        "unknown trace format; expected .csv (Azure, BurstGPT), .jsonl (Mooncake)"
        " or a ServeGen directory",
    )


def load_workload(spec: str, *, skip_bad: bool = False) -> Workload:
    """A workload from an embedded name or a file path; a file without a request is an
    ``InputFormatError``."""
    if spec in EMBEDDED:
        return EMBEDDED[spec].load(skip_bad)
    path = Path(spec)
    if path.exists():
        w = _read_path(path, skip_bad)
        if not len(w):
            # Every figure of an empty workload is 0; an error says why instead.
            why = "; ".join(w.notes) or "a header and no rows?"
            raise InputFormatError(path, None, None, f"no requests in the file ({why})")
        return w
    if path.suffix or "/" in spec:
        raise InputFormatError(path, None, None, "no such file")
    raise UnknownNameError("workload", spec, EMBEDDED)
