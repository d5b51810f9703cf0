"""The ``coldtag`` console command: each subcommand answers ``--help`` with its own usage."""

import pytest

from annotation.cli import main


@pytest.mark.parametrize(("argv", "says"), [
    (["--help"], "{annotate,train,coldstart,review,search,playlist}"),
    (["annotate", "--help"], "usage: coldtag annotate"),
    (["train", "--help"], "{fit,validate,test,predict}"),
    (["coldstart", "--help"], "--pipeline PIPELINE"),
    (["review", "--help"], "usage: coldtag review"),
    (["search", "--help"], "usage: coldtag search"),
    (["playlist", "--help"], "usage: coldtag playlist"),
])
def test_every_subcommand_answers_help(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    assert says in capsys.readouterr().out


def test_an_unknown_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["anotate"])
    assert stop.value.code == 2
    assert "invalid choice: 'anotate'" in capsys.readouterr().err
