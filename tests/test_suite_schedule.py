"""The suite's own schedule in pytest-xdist (conftest.py): the tests that share a fixture run in one
worker, as the scheduler reads each test's group from its id."""
import pytest


def test_every_grouped_test_carries_its_group_to_the_scheduler(request):
    """In a --dist loadgroup worker, xdist writes a test's xdist_group into its id (test@group), and
    the scheduler groups by that suffix. A pytest whose ids no longer take it (9.2, with pytest-xdist
    3.8) drops every group silently: each shared fixture is then built once per worker."""
    if not getattr(request.config.option, "loadgroup", False):       # set in xdist's workers only
        pytest.skip("not in a pytest-xdist worker under --dist loadgroup")
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    if not grouped:
        pytest.skip("no test of this selection shares a fixture of its module")
    lost = [item.nodeid for item in grouped if "@" not in item.nodeid.rsplit("]", 1)[-1]]
    assert not lost, (f"{len(lost)} of {len(grouped)} grouped tests have no group in their id (e.g. {lost[0]}): "
                      f"pytest {pytest.__version__} with this pytest-xdist does not group; install constraints.txt")
