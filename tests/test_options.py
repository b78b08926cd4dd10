"""The one option parser (tracker/options.py): types, constraints, errors, base defaults, help tables."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.options import FALSE_WORDS, TRUE_WORDS, check_values, opt, option_help, parse_options

REPO_ROOT = Path(__file__).resolve().parents[1]
OWNER = "demo engine"
STRIPPED = ["Zs", "Zl", "Zp", "Cc"]  # spaces and controls: strip() removes them


def _words(text: str) -> str:
    if not text:
        raise ValueError("is empty")
    return text.upper()


@dataclasses.dataclass(frozen=True)
class Demo:
    """One option of each kind and constraint the parser knows."""

    size: int = opt(64, minimum=32, help="pixels")
    step: int = opt(0, minimum=-1, maximum=4)
    tile: int = opt(256, minimum=256, maximum=2048, multiple_of=32)
    gain: float = opt(1.0, exclusive_minimum=0)
    fraction: float = opt(0.05, minimum=0, exclusive_maximum=1)
    ceiling: float = opt(0.5, exclusive_maximum=1)
    verbose: bool = opt(False, help="log more")
    name: str = opt("demo", help="a label")
    folder: Path = opt(Path("out"))
    mode: Literal["fast", "slow"] = opt("fast")
    flavour: str = opt("vanilla", choices=("vanilla", "chocolate"), aliases={"choc": "chocolate"})
    margin: int | None = opt(None, minimum=0, none=("off", "", "none"))
    note: str | None = opt(None, help="free text")
    shout: str = opt("HI", parse=_words, allowed="a word")
    internal: int = 7  # not an option: never parsed, never listed

    def __post_init__(self) -> None:
        check_values(self, owner=OWNER)
        if self.mode == "slow" and self.size > 1000:
            raise ValueError("demo engine: mode=slow takes size <= 1000")


@dataclasses.dataclass(frozen=True)
class NeedsDir:
    export_dir: Path = opt(help="where the export is")
    threads: int = opt(0, minimum=0)


def parse(options: dict[str, str], base: Demo | None = None) -> Demo:
    return parse_options(Demo, options, owner=OWNER, base=base)


def error(options: dict[str, str]) -> str:
    with pytest.raises(ValueError) as err:
        parse(options)
    return str(err.value)


# -- types ------------------------------------------------------------------------------------


def test_no_options_give_the_defaults() -> None:
    assert parse({}) == Demo()


def test_each_type_converts() -> None:
    d = parse(
        {
            "size": " 100 ",
            "step": "-1",
            "tile": "512.0",  # an integral number is an integer
            "gain": "2.5",
            "fraction": "0",
            "verbose": "Yes",
            "name": " x y ",
            "folder": "/tmp/a b",
            "mode": "SLOW",
            "flavour": "Choc",
            "margin": "12",
            "note": "hello",
            "shout": "hey",
        }
    )
    assert (d.size, d.step, d.tile, d.gain, d.fraction) == (100, -1, 512, 2.5, 0.0)
    assert type(d.size) is int and type(d.tile) is int and type(d.gain) is float
    assert d.verbose is True and d.name == "x y" and d.folder == Path("/tmp/a b")
    assert (d.mode, d.flavour, d.margin, d.note, d.shout) == ("slow", "chocolate", 12, "hello", "HEY")
    assert d.internal == 7


@pytest.mark.parametrize("word", TRUE_WORDS + FALSE_WORDS)
def test_bool_words(word: str) -> None:
    assert parse({"verbose": word.upper()}).verbose is (word in TRUE_WORDS)


def test_bool_words_include_the_usual_ones() -> None:
    assert {"true", "1", "yes"} <= set(TRUE_WORDS) and {"false", "0", "no"} <= set(FALSE_WORDS)


@pytest.mark.parametrize("word", ["off", "OFF", "", "none", " None "])
def test_optional_none_words(word: str) -> None:
    assert parse({"margin": word}).margin is None


def test_an_optional_free_text_is_none_when_empty_and_a_required_text_is_refused() -> None:
    assert parse({"note": "  "}).note is None
    assert "demo engine option name='  ' is empty" in error({"name": "  "})
    assert "folder='' is empty" in error({"folder": ""})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": "x"}, "demo engine option size='x' is not an integer; allowed: an integer >= 32 (pixels)"),
        ({"size": "1.5"}, "size='1.5' is not an integer"),
        ({"size": "inf"}, "size='inf' is not an integer"),
        ({"gain": "heavy"}, "demo engine option gain='heavy' is not a number; allowed: a number > 0"),
        ({"gain": "nan"}, "gain='nan' is not a finite number"),
        ({"gain": "inf"}, "gain='inf' is not a finite number"),
        ({"verbose": "maybe"}, "verbose='maybe' is not a boolean; allowed: true | false (log more)"),
        ({"mode": "medium"}, "mode='medium' is not allowed; allowed: fast | slow"),
        ({"flavour": "mint"}, "flavour='mint' is not allowed; allowed: vanilla | chocolate (or choc)"),
        ({"margin": "wide"}, "margin='wide' is not an integer; allowed: an integer >= 0, or off"),
        ({"shout": ""}, "demo engine option shout='' is empty; allowed: a word"),
    ],
)
def test_malformed_values_are_named(options: dict[str, str], message: str) -> None:
    assert message in error(options)


def test_a_value_that_is_not_text_is_refused() -> None:
    assert "size=64 is a int, not text" in error({"size": 64})  # type: ignore[dict-item]


# -- constraints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("size", ["32", "5000"], ["31", "-32"]),  # minimum
        ("step", ["-1", "4"], ["-2", "5"]),  # minimum and maximum
        ("tile", ["256", "2048", "288"], ["224", "2080", "300"]),  # range and multiple_of
        ("gain", ["1e-9", "1e9"], ["0", "-1"]),  # exclusive minimum
        ("fraction", ["0", "0.999"], ["1", "1.5", "-0.01"]),  # minimum and exclusive maximum
        ("ceiling", ["0.99", "-5"], ["1", "2"]),  # exclusive maximum only
        ("margin", ["0"], ["-1"]),  # an optional's bound applies to its value
    ],
)
def test_bounds_are_kept_inclusive_or_exclusive(name: str, good: list[str], bad: list[str]) -> None:
    for text in good:
        assert getattr(parse({name: text}), name) == pytest.approx(float(text))
    for text in bad:
        assert f"demo engine option {name}={text!r} is out of range; allowed: " in error({name: text})


def test_help_describes_each_constraint() -> None:
    assert option_help(Demo) == {
        "size": "an integer >= 32 (pixels)",
        "step": "an integer in [-1, 4]",
        "tile": "a multiple of 32 in [256, 2048]",
        "gain": "a number > 0",
        "fraction": "a number in [0, 1)",
        "ceiling": "a number < 1",
        "verbose": "true | false (log more)",
        "name": "a label",
        "folder": "a path",
        "mode": "fast | slow",
        "flavour": "vanilla | chocolate (or choc)",
        "margin": "an integer >= 0, or off",
        "note": "free text",
        "shout": "a word",
    }


# -- keys, required options, base, rules across fields ---------------------------------------


def test_unknown_keys_are_listed_with_the_known_ones() -> None:
    message = error({"colour": "red", "size": "64", "aaa": "1"})
    known = ", ".join(sorted(option_help(Demo)))
    assert message == f"unknown demo engine option(s) aaa, colour; known: {known}"
    assert "internal" in error({"internal": "8"})  # a field that is no option is unknown too


def test_a_required_option_must_be_given() -> None:
    needle = r"^dir engine needs option export_dir; allowed: a path \(where the export"
    with pytest.raises(ValueError, match=needle):
        parse_options(NeedsDir, {"threads": "2"}, owner="dir engine")
    assert parse_options(NeedsDir, {"export_dir": "e"}, owner="dir engine") == NeedsDir(Path("e"), 0)


def test_base_supplies_the_options_not_given() -> None:
    base = parse({"size": "100", "verbose": "true", "margin": "3"})
    d = parse({"size": "200", "margin": "off"}, base=base)
    assert (d.size, d.verbose, d.margin) == (200, True, None)
    assert parse({}, base=base) == base
    needs = NeedsDir(Path("e"), 3)
    assert parse_options(NeedsDir, {}, owner="dir engine", base=needs) == needs  # required, from base


def test_rules_across_fields_and_direct_construction_are_checked() -> None:
    assert "mode=slow takes size <= 1000" in error({"mode": "slow", "size": "2000"})
    with pytest.raises(ValueError, match=r"demo engine option size=8 is out of range"):
        Demo(size=8)
    with pytest.raises(ValueError, match=r"demo engine option mode='medium' is not allowed"):
        Demo(mode="medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"demo engine option gain=nan is not a finite number"):
        Demo(gain=float("nan"))


# -- declarations the parser refuses ---------------------------------------------------------


def test_bad_declarations_fail_when_first_used() -> None:
    with pytest.raises(TypeError, match="allowed="):
        opt(1, parse=int)
    with pytest.raises(TypeError, match="mutable"):
        opt([1, 2])

    @dataclasses.dataclass
    class Alias:
        kind: str = opt("a", choices=("a", "b"), aliases={"c": "z"})

    @dataclasses.dataclass
    class Unsupported:
        pair: tuple[int, int] = opt((1, 2))

    @dataclasses.dataclass
    class TwoTypes:
        either: int | str = opt(1)

    for cls, needle in ((Alias, "aliases"), (Unsupported, "need parse="), (TwoTypes, "one type")):
        with pytest.raises(TypeError, match=needle):
            option_help(cls)


# -- round trips ------------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "off" if value is None else str(value)


@given(
    size=st.integers(32, 10**12),
    step=st.integers(-1, 4),
    tile=st.integers(8, 64).map(lambda k: 32 * k),
    gain=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
    verbose=st.booleans(),
    mode=st.sampled_from(["fast", "slow"]),
    margin=st.none() | st.integers(0, 10**6),
    name=st.text(st.characters(codec="utf-8", exclude_categories=STRIPPED), min_size=1, max_size=20),
)
def test_every_valid_instance_survives_text_and_back(**values: object) -> None:
    if values["mode"] == "slow":
        values["size"] = min(int(values["size"]), 1000)  # type: ignore[call-overload]
    demo = Demo(**values)  # type: ignore[arg-type]
    assert parse({k: _text(v) for k, v in values.items()}) == demo


@given(text=st.text(max_size=12))
def test_any_text_either_parses_into_range_or_is_refused_by_name(text: str) -> None:
    try:
        value = parse({"fraction": text}).fraction
    except ValueError as exc:
        assert str(exc).startswith(f"demo engine option fraction={text!r} is ")
    else:
        assert 0 <= value < 1


# -- the ported settings ----------------------------------------------------------------------


def _ported() -> list[tuple[type, str]]:
    from tracker.engines.flow import FlowSettings
    from tracker.engines.onnx.options import OnnxOptions, OvOptions, TrtOptions
    from tracker.engines.sam2.options import Sam2Settings
    from tracker.overseer.policy import PolicyConfig

    return [
        (FlowSettings, "flow engine"),
        (Sam2Settings, "sam2 engine"),
        (OnnxOptions, "onnx engine"),
        (OvOptions, "openvino engine"),
        (TrtOptions, "tensorrt engine"),
        (PolicyConfig, "overseer"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_each_ported_settings_class_lists_every_option_with_help(index: int) -> None:
    cls, owner = _ported()[index]
    table = option_help(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(table) == names  # every field is an option (Sam2Settings.config is a property)
    assert all(text.strip() for text in table.values()), table
    with pytest.raises(ValueError, match=rf"^unknown {owner} option\(s\) nope; known: "):
        parse_options(cls, {"nope": "1"}, owner=owner)


def test_the_onnx_engines_share_the_export_options() -> None:
    from tracker.engines.onnx.options import ExportOptions, OnnxOptions, OvOptions, TrtOptions
    from tracker.engines.sam2.options import Sam2Settings

    shared = option_help(ExportOptions)
    assert set(shared) == {"export_dir", "model", "image_size", "checkpoint", "crop_margin_px"}
    for cls in (OnnxOptions, OvOptions, TrtOptions):
        assert {k: option_help(cls)[k] for k in shared} == shared
    sam2 = option_help(Sam2Settings)
    assert shared["crop_margin_px"] == sam2["crop_margin_px"]
    assert shared["model"].startswith(sam2["model"].split(" (")[0])


def test_the_parser_and_the_option_modules_stay_light() -> None:
    code = (
        "import sys, tracker.options, tracker.engines.onnx.options, tracker.engines.sam2.options,"
        " tracker.overseer.policy;"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'sam2')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
