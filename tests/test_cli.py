import pytest

from dlbook import cli
from dlbook.book import profiles
from dlbook.facemask import data


def test_verify_command_reports_a_mismatch_and_exits_non_zero(synthetic_data, capsys):
    assert cli.main(["verify", "--data-dir", str(synthetic_data)]) == 1
    err = capsys.readouterr().err
    assert "not in the manifest" in err and "with_mask/with_mask_000.jpg" in err


def test_manifest_command_writes_a_manifest_that_verifies(synthetic_data, tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    assert cli.main(["manifest", "--data-dir", str(synthetic_data), "--out", str(out)]) == 0
    rows = data.read_manifest(out)
    assert len(rows) == 40 and set(rows[0]) == set(data.MANIFEST_COLUMNS)
    assert data.verify_data(synthetic_data, out).ok


def test_build_command_rejects_an_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        cli.main(["build", "--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_profiles_get_validates_its_arguments():
    with pytest.raises(ValueError, match="profile='huge'"):
        profiles.get("huge", "fundamentals")
    with pytest.raises(ValueError, match="chapter='poetry'"):
        profiles.get("smoke", "poetry")
    settings = profiles.get("smoke", "features")
    settings["limit"] = -1
    assert profiles.get("smoke", "features")["limit"] != -1  # a copy, not the shared dict


def test_prepare_takes_the_names_a_build_passes_and_refuses_others(tmp_path, capsys):
    # the pages need no preparing: nothing runs
    assert cli.main(["prepare", "--chapters", "claims,reproducibility"]) == 0
    assert "prepared 0 runs" in capsys.readouterr().out
    assert cli.main(["prepare", "--chapters", "fundamentals,no_such_chapter"]) == 2
    assert "unknown chapter(s) ['no_such_chapter']" in capsys.readouterr().err
