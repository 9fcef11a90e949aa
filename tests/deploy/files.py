"""Readers for the deployment files, as docker compose and BuildKit read them (no engine needed).

- :func:`compose` parses docker-compose.yml with PyYAML (merge keys resolved);
- :func:`interpolate` expands ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` ... and ``$$``
  the way compose does, nested defaults included;
- :func:`env_file` reads .env.example, commented-out ``# NAME=value`` examples included;
- :func:`dockerfile_stages` splits the Dockerfile into its build stages and instructions
  (continuation lines joined, heredoc bodies kept).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with compose's variable syntax expanded from ``env``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif (match := re.match(r"\$(" + NAME + ")", text[i:])) is not None:
            out.append(env.get(match[1], ""))
            i += match.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(r"(" + NAME + r")(?:(:?[-?+])(.*))?", body, re.DOTALL)
    if match is None:
        raise ValueError(f"not a compose variable: ${{{body}}}")
    name, op, arg = match[1], match[2], match[3] or ""
    value = env.get(name)
    present = value is not None and (value != "" or not (op or "").startswith(":"))
    if op is None:
        return value or ""
    if op in (":-", "-"):
        return value if present and value is not None else interpolate(arg, env)
    if op in (":?", "?"):
        if not present or value is None:
            raise MissingVariable(name, arg)
        return value
    return interpolate(arg, env) if present else ""  # :+ and +


def referenced_variables(text: str) -> dict[str, bool]:
    """Every variable ``text`` interpolates, each with whether it is required (``:?``/``?``)."""
    text = text.replace("$$", "")
    found: dict[str, bool] = {}
    for match in re.finditer(r"\$\{(" + NAME + r")(:?\?)?|\$(" + NAME + ")", text):
        name = match[1] or match[3]
        found[name] = found.get(name, False) or bool(match[2])
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment``, in either of compose's two forms."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


@dataclass(frozen=True)
class EnvLine:
    name: str
    value: str
    active: bool  # False for a commented-out example


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, EnvLine]:
    lines: dict[str, EnvLine] = {}
    for raw in path.read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?(" + NAME + r")=(.*)", raw.strip())
        if match:
            lines[match[2]] = EnvLine(match[2], match[3], active=match[1] is None)
    return lines


# -- Dockerfile --------------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str
    heredoc: str | None = None

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT, or the shell words of anything else."""
        import json

        if self.args.startswith("["):
            return list(json.loads(self.args))
        return shlex.split(self.args)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """The global ``ARG`` defaults and the stages by name."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction in _instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, base)
        elif current is None:
            if instruction.keyword == "ARG" and "=" in instruction.args:
                key, value = instruction.args.split("=", 1)
                args[key] = value
        else:
            current.instructions.append(instruction)
    return args, stages


def _instructions(text: str) -> Iterator[Instruction]:
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            following = lines[i].strip()
            i += 1
            if following.startswith("#"):
                continue
            line = line[:-1].rstrip() + " " + following
        keyword, _, rest = line.partition(" ")
        heredoc = None
        marker = re.search(r"<<-?(['\"]?)(" + NAME + r")\1", rest)
        if marker:
            body: list[str] = []
            while i < len(lines) and lines[i] != marker[2]:
                body.append(lines[i])
                i += 1
            i += 1  # the closing delimiter
            heredoc = "\n".join(body) + "\n"
        yield Instruction(keyword.upper(), rest.strip(), heredoc)
