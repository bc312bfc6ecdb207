"""In a browser: the agent page's Tests tab opens its tests, the run button runs them
and the page shows each scenario's result when the run is over."""

from __future__ import annotations

from tests.browser.conftest import launch, shot  # noqa: F401 (fixtures)
from tests.scenarios.test_web import _layout
from tests.web.conftest import served


async def test_the_tests_tab_runs_the_scenarios_and_shows_results(tmp_path, launch,  # noqa: F811
                                                                 shot) -> None:  # noqa: F811
    _layout(tmp_path)
    async with served(tmp_path) as client:
        page = await launch()
        await page.goto(f"{client.base_url}/agents/front-desk")
        await page.click(".tabs >> text=Tests")
        await page.wait_for_url("**/agents/front-desk/tests")
        assert await page.locator("tr[data-scenario]").count() == 2
        await page.click("#run-tests")
        failed = page.locator("tr[data-scenario=failing] strong.err")
        await failed.wait_for()
        await shot(page, "tests-tab")
        assert await failed.inner_text() == "failed"
        assert await page.locator("tr[data-scenario=passing] strong").inner_text() == "passed"
        await page.click(".tabs >> text=Tools")
        await page.wait_for_selector("#agent-form")
