"""Curves survive a resume: re-logged steps replace old rows, a line cut by a kill is skipped."""

from soho.train.curves import CurveLog, write_csv


def test_curves_keep_the_last_row_per_step_and_skip_a_cut_line(tmp_path):
    log = CurveLog(tmp_path / "curves.jsonl")
    assert log.rows() == [] and log.final() == {}
    for step, loss in [(1, 5.0), (2, 4.0), (3, 3.0)]:
        log.append(step, {"loss": loss})
    with open(log.path, "a") as handle:
        handle.write('{"step": 4, "lo')  # killed mid-write
    log.append(3, {"loss": 2.5})  # resumed from step 2's checkpoint, step 3 re-run
    assert [r["step"] for r in log.rows()] == [1, 2, 3]
    assert log.final() == {"final_loss": 2.5}
    write_csv(tmp_path / "curves.csv", log.rows())
    assert (tmp_path / "curves.csv").read_text().splitlines() == ["step,loss", "1,5.0", "2,4.0", "3,2.5"]
