"""ann.progress: plain lines in a log (stderr not a terminal), never a bar's carriage returns."""

from ann.progress import progress


def test_a_log_gets_a_line_every_n_items_and_one_at_the_end(capsys):
    assert list(progress(range(25), 25, "eval", every=10)) == list(range(25))
    err = capsys.readouterr().err
    assert err.splitlines() == ["eval: 10/25 images", "eval: 20/25 images", "eval: 25/25 images"]
    assert "\r" not in err


def test_an_unknown_total_is_counted_at_the_end(capsys):
    list(progress(iter("abc"), None, "predict", unit="files", every=2))
    assert capsys.readouterr().err.splitlines() == ["predict: 2/? files", "predict: 3/3 files"]
