"""Editing agents in the screens: only valid saves reach the disk, comments survive,
errors show beside the field they concern."""

from __future__ import annotations

from html.parser import HTMLParser

from agentplatform.agents.yamlio import load_document, to_plain

from .conftest import base_of, csrf_of, served, write_agent


class _FormReader(HTMLParser):
    """Collects a form's fields the way a browser submits them untouched."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_value: str | None = None
        self._option: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value") or ("on" if a.get("type") == "checkbox" else "")))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""
        elif tag == "select":
            self._select, self._select_value = a.get("name"), None
        elif tag == "option" and self._select is not None:
            self._option, self._text = a, ""

    def handle_data(self, data):
        if self._textarea is not None or self._option is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None
        elif tag == "option" and self._option is not None:
            value = self._option.get("value")
            value = self._text if value is None else value
            if self._select_value is None or "selected" in self._option:
                self._select_value = value  # the first option, unless one is selected
            self._option = None
        elif tag == "select" and self._select is not None:
            self.fields.append((self._select, self._select_value or ""))
            self._select = None


def form_of(html: str) -> dict[str, object]:
    """The agent form's fields as a browser would submit them untouched."""
    reader = _FormReader()
    reader.feed(html.split('id="agent-form"')[1].split("</form>")[0])
    data: dict[str, object] = {}
    for key, value in reader.fields:
        if key in data:
            old = data[key]
            data[key] = (old if isinstance(old, list) else [old]) + [value]
        else:
            data[key] = value
    return data


async def open_form(client, name: str = "front-desk") -> tuple[str, dict[str, object]]:
    page = await client.get(f"/agents/{name}")
    assert page.status_code == 200, page.text
    return page.text, form_of(page.text)


async def test_an_untouched_save_leaves_the_file_byte_for_byte(tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        saved = await client.post("/agents/front-desk", data=data)
        assert saved.status_code == 303 and "saved=unchanged" in saved.headers["location"]
    assert agent_file.read_bytes() == before


async def test_editing_a_field_saves_it_and_keeps_the_comments(tmp_path, agent_file):
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["greeting"] = "Hello from the new greeting."
        data["temperature"] = "0.6"
        data["prompt"] = "You answer the phone.\nBe brief and kind.\n"
        saved = await client.post("/agents/front-desk", data=data)
        assert saved.status_code == 303, saved.text
        shown = await client.get(saved.headers["location"])
        assert "Saved." in shown.text
    text = agent_file.read_text()
    assert "# The front desk, written by hand" in text
    assert "# one of the model's voices" in text and "# Looks up free slots." in text
    plain = to_plain(load_document(text, file="x"))
    assert plain["greeting"] == "Hello from the new greeting."
    assert plain["temperature"] == 0.6
    assert plain["prompt"] == "You answer the phone.\nBe brief and kind.\n"
    assert "prompt: |" in text  # a multi-line prompt stays a block


async def test_an_invalid_value_is_shown_beside_its_field_and_the_file_is_unchanged(
        tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["temperature"] = "5"
        data["max_output_tokens"] = "lots"
        refused = await client.post("/agents/front-desk", data=data)
    assert refused.status_code == 422
    assert agent_file.read_bytes() == before
    html = refused.text
    temp = html.split('name="temperature"')[1].split("</div>")[0]
    assert 'data-error-for="temperature"' in temp and "less than or equal to 2" in temp
    tokens = html.split('name="max_output_tokens"')[1].split("</div>")[0]
    assert 'data-error-for="max_output_tokens"' in tokens
    # What the admin typed is still in the form, to fix rather than retype.
    assert 'name="temperature" value="5"' in html


async def test_one_save_reports_every_error_shape_and_meaning_alike(tmp_path, agent_file):
    """A temperature out of range (the file's shape) and a zero token cap and an unknown
    voice (what the values mean) are all reported by the same save."""
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["temperature"] = "5"
        data["max_output_tokens"] = "0"
        data["voice"] = "nobody"
        refused = await client.post("/agents/front-desk", data=data)
    assert refused.status_code == 422
    html = refused.text
    for field, words in (("temperature", "less than or equal to 2"),
                         ("max_output_tokens", "at least 1"), ("voice", "not offered")):
        beside = html.split(f'name="{field}"')[1].split("</div>")[0]
        assert f'data-error-for="{field}"' in beside and words in beside, field


async def test_the_token_hint_says_what_the_check_refuses_and_what_it_warns_of(
        tmp_path, agent_file):
    """The form's hint and the validator agree: at least 1 is accepted, a cap under the
    small-cap threshold only warns."""
    from agentplatform.agents.validation import SMALL_TOKEN_CAP

    async with served(tmp_path) as client:
        html, data = await open_form(client)
        data["max_output_tokens"] = "1"
        accepted = await client.post("/agents/front-desk", data=data)
    hint = html.split('for="f-max"')[1].split("</label>")[0]
    assert "at least 1" in hint and f"under {SMALL_TOKEN_CAP:,}" in hint
    assert accepted.status_code == 303


async def test_a_bad_tool_url_is_reported_on_that_tool(tmp_path, agent_file):
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["tools[0].url"] = "ftp://nowhere"
        refused = await client.post("/agents/front-desk", data=data)
    assert refused.status_code == 422
    url_field = refused.text.split('name="tools[0].url"')[1].split("</div>")[0]
    assert 'data-error-for="tools[0].url"' in url_field and "http:// or https://" in url_field


async def test_tools_can_be_removed_added_and_the_builtins_toggled(tmp_path, agent_file):
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["tools[0].remove"] = "on"
        data["new_tool.name"] = "book_slot"
        data["new_tool.url"] = "https://example.com/book"
        data["new_tool.parameters"] = '{"type": "object", "properties": {"day": {"type": "string"}}}'
        data.pop("end_call", None)
        data["transfer"] = "reception = +15555550111"
        saved = await client.post("/agents/front-desk", data=data)
        assert saved.status_code == 303, saved.text
    tools = to_plain(load_document(agent_file.read_text(), file="x"))["tools"]
    assert [t["type"] for t in tools] == ["webhook", "transfer_call"]
    assert tools[0]["name"] == "book_slot" and tools[0]["parameters"]["properties"]["day"]
    assert tools[1]["destinations"] == {"reception": "+15555550111"}


async def test_advanced_json_that_does_not_parse_is_refused_with_its_position(tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        data["advanced"] = '{"openai_realtime": {"speed": 1.1,}}'
        refused = await client.post("/agents/front-desk", data=data)
    assert refused.status_code == 422 and agent_file.read_bytes() == before
    field = refused.text.split('name="advanced"')[1].split("</div>")[1]
    assert "not valid JSON" in refused.text and "column" in refused.text
    assert field is not None


async def test_voice_streaming_off_with_an_audio_only_model_is_an_error_on_that_field(
        tmp_path):
    write_agent(tmp_path / "agents", "name: night\nmodel: google/gemini-2.5-flash-native-audio\n",
                name="night")
    async with served(tmp_path) as client:
        _, data = await open_form(client, "night")
        data.pop("voice_streaming", None)
        refused = await client.post("/agents/night", data=data)
    assert refused.status_code == 422
    box = refused.text.split('name="voice_streaming"')[1].split("</div>")[1]
    assert 'data-error-for="voice_streaming"' in box and "only produces audio" in box


async def test_the_yaml_tab_saves_only_valid_text(tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        page, _ = await open_form(client)
        token, base = csrf_of(page), base_of(page)
        bad = await client.post("/agents/front-desk/yaml", data={
            "csrf_token": token, "base": base, "yaml_text": "name: front-desk\nvoice: [\n"})
        assert bad.status_code == 422 and "line" in bad.text
        assert agent_file.read_bytes() == before
        text = before.decode().replace("temperature: 0.8", "temperature: 0.3  # calmer")
        good = await client.post("/agents/front-desk/yaml", data={
            "csrf_token": token, "base": base, "yaml_text": text})
        assert good.status_code == 303
    assert agent_file.read_text() == text


async def test_a_save_over_a_file_changed_on_disk_meanwhile_is_refused(tmp_path, agent_file):
    async with served(tmp_path) as client:
        _, data = await open_form(client)
        edited = agent_file.read_text().replace("temperature: 0.8", "temperature: 0.9")
        agent_file.write_text(edited)
        data["greeting"] = "Mine."
        refused = await client.post("/agents/front-desk", data=data)
    assert refused.status_code == 409 and "changed on disk" in refused.text
    assert agent_file.read_text() == edited


async def test_create_duplicate_and_delete(tmp_path, agent_file):
    async with served(tmp_path) as client:
        page = await client.get("/agents/new")
        token = csrf_of(page.text)
        bad = await client.post("/agents/new", data={"csrf_token": token, "name": "Bad Name",
                                                     "model": "openai/gpt-realtime"})
        assert bad.status_code == 422 and "lowercase" in bad.text
        taken = await client.post("/agents/new", data={"csrf_token": token, "name": "front-desk",
                                                       "model": "openai/gpt-realtime"})
        assert taken.status_code == 422 and "already exists" in taken.text
        made = await client.post("/agents/new", data={"csrf_token": token, "name": "sales",
                                                      "model": "openai/gpt-realtime",
                                                      "description": "Sells things."})
        assert made.status_code == 303
        assert (tmp_path / "agents" / "sales.yaml").exists()
        dup = await client.post("/agents/front-desk/duplicate",
                                data={"csrf_token": token, "new_name": "front-desk-2"})
        assert dup.status_code == 303
        copy = to_plain(load_document((tmp_path / "agents" / "front-desk-2.yaml").read_text(),
                                      file="x"))
        assert copy["name"] == "front-desk-2" and "phone_numbers" not in copy
        assert "# The front desk, written by hand" in (
            tmp_path / "agents" / "front-desk-2.yaml").read_text()
        listing = await client.get("/")
        assert all(n in listing.text for n in ("sales", "front-desk-2", "front-desk"))
        gone = await client.post("/agents/sales/delete", data={"csrf_token": token})
        assert gone.status_code == 303
    assert not (tmp_path / "agents" / "sales.yaml").exists()


async def test_a_file_that_does_not_load_opens_on_its_yaml_tab(tmp_path):
    write_agent(tmp_path / "agents", "name: broken\nmodel: openai/gpt-realtime\nvoice: [\n",
                name="broken")
    async with served(tmp_path) as client:
        listing = await client.get("/")
        assert "Files that do not load" in listing.text and "broken.yaml" in listing.text
        page = await client.get("/agents/broken")
    assert page.status_code == 200
    assert 'data-panel="yaml" ' in page.text and 'id="agent-form"' not in page.text


# --- files built to be expensive --------------------------------------------------------

BOMB_LEVELS = 7


def _bomb(name: str) -> str:
    from tests.agents.yaml_bombs import alias_bomb
    return alias_bomb(name, levels=BOMB_LEVELS)


async def test_the_yaml_tab_refuses_an_alias_bomb_and_keeps_the_file(tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        page, _ = await open_form(client)
        refused = await client.post("/agents/front-desk/yaml", data={
            "csrf_token": csrf_of(page), "base": base_of(page),
            "yaml_text": _bomb("front-desk")})
        assert refused.status_code == 422
        assert "aliases expand the file past" in refused.text
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["agents"] == 1
    assert agent_file.read_bytes() == before


async def test_a_bomb_on_disk_shows_as_a_broken_file_on_every_page(tmp_path, agent_file):
    bomb = write_agent(tmp_path / "agents", _bomb("bomb"), name="bomb")
    before = bomb.read_bytes()
    async with served(tmp_path) as client:
        listing = await client.get("/")
        assert listing.status_code == 200 and "bomb.yaml" in listing.text
        assert "aliases expand the file past" in listing.text
        edit = await client.get("/agents/bomb")
        assert edit.status_code == 200 and "aliases expand the file past" in edit.text
        api = (await client.get("/api/agents")).json()
        assert [a["name"] for a in api["agents"]] == ["front-desk"]
        assert "aliases expand" in api["problems"][str(bomb)][0]
    assert bomb.read_bytes() == before
