# The official Python SDKs against the router in front of real vLLM engines: what users' code sends and
# parses, not our reading of the API. The SDKs validate the answers' shapes themselves, so an answer they
# accept is one a user's program accepts.
#   anthropic ROUTER_URL OUT   messages.create, messages.count_tokens, messages.stream
#   responses ROUTER_URL OUT   4 stored responses: each retrieved by id, each continued by previous_response_id
import json
import sys


def route_engine(raw):
    for part in (raw.headers.get("x-switchyard-route") or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == "engine":
            return v
    return None


def anthropic_checks(url):
    import anthropic

    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Name three rivers of Europe."}]
    msg = client.messages.create(model="tiny", max_tokens=8, messages=messages)
    count = client.messages.count_tokens(model="tiny", messages=messages)
    events = 0
    with client.messages.stream(model="tiny", max_tokens=8, messages=messages) as s:
        for _ in s:
            events += 1
        final = s.get_final_message()
    return {
        "ok": msg.type == "message" and count.input_tokens > 0 and events > 0 and final.type == "message",
        "version": anthropic.__version__,
        "message_type": msg.type,
        "stop_reason": msg.stop_reason,
        "output_tokens": msg.usage.output_tokens,
        "usage_input_tokens": msg.usage.input_tokens,
        "input_tokens": count.input_tokens,
        "stream_events": events,
    }


def responses_checks(url):
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    debug = {"x-switchyard-debug": "1"}
    res = {"version": openai.__version__, "found": 0, "followed": 0, "failures": [], "engines": {}}
    for i in range(4):
        try:
            raw = client.responses.with_raw_response.create(
                model="tiny", input=f"Story {i}: a river.", store=True, max_output_tokens=8, extra_headers=debug
            )
            made = raw.parse()
            eng = route_engine(raw) or "?"
            res["engines"][eng] = res["engines"].get(eng, 0) + 1
        except Exception as e:  # noqa: BLE001
            res["failures"].append(f"create {i}: {e}")
            continue
        try:
            got = client.responses.retrieve(made.id)
            if got.id == made.id:
                res["found"] += 1
            else:
                res["failures"].append(f"retrieve {i}: id {got.id} for {made.id}")
        except Exception as e:  # noqa: BLE001
            res["failures"].append(f"retrieve {i}: {e}")
        try:
            nxt = client.responses.create(model="tiny", input="And then?", previous_response_id=made.id, max_output_tokens=8)
            if nxt.status == "completed" or nxt.output is not None:
                res["followed"] += 1
        except Exception as e:  # noqa: BLE001
            res["failures"].append(f"previous_response_id {i}: {e}")
    return res


def main():
    mode, url, out = sys.argv[1], sys.argv[2], sys.argv[3]
    res = anthropic_checks(url) if mode == "anthropic" else responses_checks(url)
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
