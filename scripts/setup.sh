#!/usr/bin/env bash
# Installs whatever is missing for this project and nothing else: FFmpeg's shared libraries (torchcodec
# decodes through them), a Python 3.11 virtual environment in .venv, and the project with its extras; with the
# "review" extra, as root, also Debian's Chromium, which the review page's browser tests drive.
# Re-running it when everything is there takes about a second: the install is keyed by a hash of
# pyproject.toml and the extras asked for.
#
#   bash scripts/setup.sh [EXTRAS] [realistic]
#
# "realistic" also installs FluidSynth and a General MIDI soundfont (about 150 MB), which only the
# realistic toy catalog (python -m toycatalog build --preset realistic) needs.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
realistic="${2:-}"
if [ -n "$realistic" ] && [ "$realistic" != realistic ]; then
    echo "setup: the second argument can only be 'realistic', got '$realistic'" >&2
    exit 2
fi

have_ffmpeg() {
    command -v ffmpeg >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'
}
if ! have_ffmpeg; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing FFmpeg with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
    else
        echo "setup: FFmpeg (its shared libraries, for torchcodec) is missing and this is not a root shell" \
             "on Debian/Ubuntu. Install it yourself (e.g. 'sudo apt-get install ffmpeg' or" \
             "'brew install ffmpeg'), then run this command again." >&2
        exit 1
    fi
fi

have_fluidsynth() {
    command -v fluidsynth >/dev/null 2>&1 && [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]
}
# The rubberband command stretches and shifts recordings for the tempo and key checks (tests/tagging/test_tempo_key.py,
# scripts/tempo_key_eval.py); they skip, saying so, without it.
if [ -n "$realistic" ] && ! command -v rubberband >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing rubberband-cli with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rubberband-cli >/dev/null
fi
if [ -n "$realistic" ] && ! have_fluidsynth; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing FluidSynth and the General MIDI soundfont with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fluidsynth \
            fluid-soundfont-gm >/dev/null
    else
        echo "setup: the realistic toy catalog needs FluidSynth and a General MIDI soundfont, and this is not" \
             "a root shell on Debian/Ubuntu. Install them yourself (e.g. 'sudo apt-get install fluidsynth" \
             "fluid-soundfont-gm', or 'brew install fluid-synth' and set COLDTAG_SOUNDFONT to a GM .sf2 file)," \
             "then run this command again." >&2
        exit 1
    fi
fi

# Playwright's own browser download is not used: its browser tests run Debian's chromium. Without root they
# are skipped, saying so.
if [[ ",$extras," == *",review,"* ]] && ! command -v chromium >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium with apt-get (for the review page's browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

python=""
for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: Python 3.11 is needed (torch 2.11 wheels are pinned for it); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $python"
    "$python" -m venv .venv
fi

# "bytecode": venvs made before the install compiled bytecode get it on their next set-up.
stamp=".venv/.installed-$( (cat pyproject.toml; echo "$extras"; echo bytecode) | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
    echo "setup: installing the project with extras [$extras] into .venv"
    # --compile-bytecode: every installed module compiled now (a minute or two, once), not by each process
    # that imports it: where PYTHONDONTWRITEBYTECODE is set nothing would ever be cached, and every training,
    # test or demo process would compile torch, Lightning and transformers again (10 to 20 s each on 2 cores).
    .venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode -e ".[$extras]"
    # Importing librosa's modules compiles their numba functions into numba's cache; done here, once and alone
    # (under a minute), no two processes (decoding workers, test subprocesses) write that cache at once later
    # (numba#10128: a crash).
    .venv/bin/python -c 'from tagging.tempo_key import warm_cache; warm_cache()'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# The project's own modules, compiled for the same reason; only files changed since their last compile are.
.venv/bin/python -m compileall -q tagging fusion recsys annotation coldtag toycatalog scripts benchmarks \
    train.py >/dev/null

# The pretrained musicnn checkpoints (python -m tagging pretrained), checked apart from the stamp so that an
# existing .venv gets them too. --no-deps: the wheel pins numpy<1.17 and TensorFlow, which coldtag does not need
# (it reads the checkpoints itself); not a pyproject dependency for the same reason.
if ! .venv/bin/python -c 'import sys; from importlib.metadata import version; sys.exit(version("musicnn") != "0.1.0")' \
    2>/dev/null; then
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
    echo "setup: installing the musicnn 0.1.0 wheel (pretrained checkpoints, 29 MB) without its dependencies"
    .venv/bin/uv pip install -q --python .venv/bin/python --no-deps musicnn==0.1.0
fi
