"""How many acceptances a group commit can expect (writequeue/arrivals.py)."""

from mitmcache.writequeue.arrivals import FORGOTTEN_SECONDS, WINDOW_SECONDS, Arrivals


def test_nothing_is_expected_before_any_write():
    assert Arrivals().expected == 0


def test_the_most_writes_on_their_way_at_once_are_expected():
    arrivals = Arrivals()
    for n in range(4):
        arrivals.routed(f"f{n}", 10.0 + n / 1000)
    arrivals.done("f0", 10.01)
    arrivals.routed("f4", 10.02)
    assert arrivals.expected == 4


def test_the_peak_outlasts_the_writes_for_the_next_window():
    arrivals = Arrivals()
    for n in range(3):
        arrivals.routed(f"f{n}", 10.0)
    for n in range(3):
        arrivals.done(f"f{n}", 10.0 + WINDOW_SECONDS / 2)
    arrivals.routed("next", 10.0 + WINDOW_SECONDS * 1.5)
    assert arrivals.expected == 3


def test_a_peak_two_windows_old_is_forgotten():
    arrivals = Arrivals()
    for n in range(3):
        arrivals.routed(f"f{n}", 10.0)
        arrivals.done(f"f{n}", 10.0)
    arrivals.routed("lone", 10.0 + 2.5 * WINDOW_SECONDS)
    assert arrivals.expected == 1


def test_a_write_no_hook_finished_is_forgotten_in_time():
    arrivals = Arrivals()
    arrivals.routed("lost", 10.0)
    later = 10.0 + FORGOTTEN_SECONDS + 3 * WINDOW_SECONDS
    arrivals.routed("f", later)
    arrivals.done("f", later)
    arrivals.routed("g", later + 2.5 * WINDOW_SECONDS)
    assert arrivals.expected == 1


def test_finishing_a_write_it_never_saw_changes_nothing():
    arrivals = Arrivals()
    arrivals.routed("f", 10.0)
    arrivals.done("unknown", 10.1)
    assert arrivals.expected == 1
