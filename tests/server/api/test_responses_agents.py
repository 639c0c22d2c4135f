"""The OpenAI Agents SDK (`openai-agents`) running agents with a function tool against the
real server's Responses API. SmolLM2-135M is tiny, so the tool call is forced through
model_settings.tool_choice (grammar-constrained on our side); the assertions are on the
run's structure, never on the model's wording."""

from __future__ import annotations

import asyncio

import openai
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem

from tests.conftest import MODEL

set_tracing_disabled(True)  # traces would go to OpenAI's servers


def _agent(server_url: str, calls: list[str], **kwargs) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"Sunny and 21 C in {city}"

    client = openai.AsyncOpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0)
    return Agent(name="weather", instructions="You answer questions about the weather.",
                 tools=[get_weather],
                 model=OpenAIResponsesModel(model=MODEL, openai_client=client), **kwargs)


def _settings(**kwargs) -> ModelSettings:
    return ModelSettings(temperature=0, max_tokens=40, **kwargs)


def test_agent_calls_its_tool_and_returns_the_result(server_url):
    calls: list[str] = []
    agent = _agent(server_url, calls, model_settings=_settings(tool_choice="get_weather"),
                   tool_use_behavior="stop_on_first_tool")
    result = asyncio.run(Runner.run(agent, "What's the weather in Paris?", max_turns=3))
    assert len(calls) == 1 and calls[0]
    assert [type(item) for item in result.new_items] == [ToolCallItem, ToolCallOutputItem]
    assert result.final_output == f"Sunny and 21 C in {calls[0]}"
    [response] = result.raw_responses
    assert response.response_id.startswith("resp_") and response.usage.input_tokens > 0


def test_agent_answers_after_the_tool_result(server_url):
    """The default loop: the forced call, the tool runs, the model is asked again (the SDK
    resets tool_choice after a call) and ends the run with a message."""
    calls: list[str] = []
    agent = _agent(server_url, calls, model_settings=_settings(tool_choice="required"))
    result = asyncio.run(Runner.run(agent, "What's the weather in Rome?", max_turns=6))
    kinds = [type(item) for item in result.new_items]
    assert kinds[:2] == [ToolCallItem, ToolCallOutputItem] and calls
    assert kinds[-1] is MessageOutputItem and isinstance(result.final_output, str)
    assert len(result.raw_responses) >= 2


def test_streamed_agent_run(server_url):
    calls: list[str] = []
    agent = _agent(server_url, calls, model_settings=_settings(tool_choice="get_weather"),
                   tool_use_behavior="stop_on_first_tool")

    async def run() -> tuple[list, object]:
        streamed = Runner.run_streamed(agent, "Weather in Oslo?", max_turns=3)
        events = [event async for event in streamed.stream_events()]
        return events, streamed

    events, streamed = asyncio.run(run())
    raw = [e.data.type for e in events if e.type == "raw_response_event"]
    assert raw[0] == "response.created" and "response.completed" in raw
    assert "response.function_call_arguments.delta" in raw
    items = [e.item for e in events if e.type == "run_item_stream_event"]
    assert any(isinstance(i, ToolCallItem) for i in items)
    assert streamed.final_output == f"Sunny and 21 C in {calls[0]}"


def test_agent_chains_turns_through_previous_response_id(server_url):
    calls: list[str] = []
    agent = _agent(server_url, calls, model_settings=_settings(tool_choice="get_weather"),
                   tool_use_behavior="stop_on_first_tool")

    async def run():
        first = await Runner.run(agent, "Weather in Paris?", max_turns=3)
        return first, await Runner.run(agent, "And in Lyon?", max_turns=3,
                                       previous_response_id=first.last_response_id)

    first, second = asyncio.run(run())
    assert len(calls) == 2 and second.final_output.startswith("Sunny")
    assert second.raw_responses[0].usage.input_tokens > first.raw_responses[0].usage.input_tokens
