"""Generate the demo suite's SIMULATED data: Northwind Outfitters' logged OpenAI traffic and the
recorded answers of two candidate models.

Northwind Outfitters is a fictional outdoor-gear retailer invented for this project. Nothing here
is real traffic or a real model's output: texts are written from templates, and the candidates'
answers are the logged answers degraded at rates chosen to make the report interesting
(one candidate close to parity, one with real regressions). Run from the repository root:

    python suites/demo/generate.py

It rewrites ``logs/traffic.jsonl`` and ``recordings/*.jsonl`` deterministically (seeded). The
recordings are cache exports keyed by the real candidate identity and replay request, so
``migrate-eval run`` answers them from the cache through the same path a live run uses.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE_MODEL = "gpt-4o-mini-2024-07-18"
START = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)

FIRST = [
    "Maya",
    "Liam",
    "Sofia",
    "Noah",
    "Aisha",
    "Lucas",
    "Emma",
    "Kenji",
    "Olivia",
    "Mateo",
    "Zara",
    "Ethan",
    "Priya",
    "Jonas",
    "Chloe",
    "Diego",
    "Hannah",
    "Omar",
    "Ines",
    "Felix",
]
LAST = [
    "Okafor",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Garcia",
    "Novak",
    "Haddad",
    "Larsen",
    "Dubois",
    "Kowalski",
    "Silva",
    "Nguyen",
    "Brennan",
    "Moreau",
    "Fischer",
]
PRODUCTS = [
    ("NW-TENT-2P", "Ridgeline 2-person tent"),
    ("NW-BAG-0C", "Summit 0°C sleeping bag"),
    ("NW-JKT-RAIN", "Stormshell rain jacket"),
    ("NW-BOOT-HK", "Trailhead hiking boots"),
    ("NW-PACK-45", "Alpine 45L backpack"),
    ("NW-STOVE-1", "Ember camp stove"),
    ("NW-PAD-INS", "Cloudrest insulated sleeping pad"),
    ("NW-LAMP-HD", "Lumen 400 headlamp"),
    ("NW-POLE-CF", "Carbon trekking poles"),
    ("NW-FILT-W", "ClearFlow water filter"),
]
STORES = ["denver", "seattle", "portland", "boulder", "online"]

# ---------------------------------------------------------------- ticket triage (classification)
TRIAGE_SYSTEM = (
    "You are the support triage assistant of Northwind Outfitters, an outdoor gear retailer.\n"
    "Classify the customer's message into exactly one category: billing, shipping, returns, "
    "product_question, account, other.\nAnswer with the category name only, in lowercase."
)
TRIAGE = {
    "billing": [
        "I was charged twice for order {order}. Can you refund the duplicate charge of ${amount}?",
        "My card shows a pending charge of ${amount} but I cancelled the order {order} yesterday.",
        "Why did the price of the {product} change after I paid? I want the difference back.",
        "The invoice for {order} lists the wrong VAT number, can you reissue it?",
    ],
    "shipping": [
        "Order {order} was supposed to arrive on {date} and tracking hasn't moved in 4 days.",
        "Can you ship my {product} to a different address? It hasn't left the warehouse yet.",
        "The courier says the package for {order} was delivered but I never got it.",
        "Do you ship to Canada? I want to order the {product}.",
    ],
    "returns": [
        "The {product} I received is the wrong size. How do I return it?",
        "I'd like to return order {order}, the {product} leaks at the seams.",
        "Is the return window 30 or 60 days? I bought the {product} on {date}.",
        "I sent back the {product} two weeks ago and still no refund for {order}.",
    ],
    "product_question": [
        "Is the {product} waterproof enough for a week in Scotland?",
        "What's the packed weight of the {product}?",
        "Will the {product} fit in the Alpine 45L backpack's side pocket?",
        "Is the {product} compatible with standard isobutane canisters?",
    ],
    "account": [
        "I can't log in, the password reset email never arrives at {email}.",
        "Please change the email on my account from {email} to my work address.",
        "How do I delete my Northwind account and all my data?",
        "My loyalty points disappeared after I updated my profile.",
    ],
    "other": [
        "Do you have a store in Denver open on Sundays?",
        "I love the {product}, just wanted to say thanks to the team!",
        "Are you hiring seasonal staff for the Seattle store?",
        "Can I bring my old tent to a store for recycling?",
    ],
}
# Realistic confusions for a weaker model.
CONFUSABLE = {
    "billing": "returns",
    "shipping": "returns",
    "returns": "shipping",
    "product_question": "other",
    "account": "billing",
    "other": "product_question",
}

# ---------------------------------------------------------------- order extraction (structured)
EXTRACT_SYSTEM = (
    "You extract structured data from customer e-mails for Northwind Outfitters' order desk. "
    "Return JSON matching the schema. Use null for an order id that is not in the e-mail."
)
EXTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": ["string", "null"], "pattern": "^NW-[0-9]{5}$"},
        "customer_name": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                },
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
        "issue": {
            "type": "string",
            "enum": ["damaged", "missing_item", "wrong_item", "late", "change_request"],
        },
        "priority": {"type": "string", "enum": ["low", "normal", "high"]},
    },
    "required": ["order_id", "customer_name", "items", "issue", "priority"],
    "additionalProperties": False,
}
EXTRACT_MAILS = {
    "damaged": "Hi, this is {name}. My order {order} arrived today but the {product} ({sku}) was damaged - {detail}. I ordered {qty}.",
    "missing_item": "Hello, {name} here. Order {order} came without the {product} (SKU {sku}), I paid for {qty}. {detail}",
    "wrong_item": "Dear Northwind, I ({name}) received a different item instead of {qty}x {product} [{sku}] in order {order}. {detail}",
    "late": "{name} writing. Where is my {product} ({sku}, qty {qty})? Order {order} is a week late. {detail}",
    "change_request": "Hi! Can I change order {order} to {qty} units of the {product} ({sku})? Thanks, {name}. {detail}",
}
DETAILS = {
    "high": [
        "I leave for a trek on Friday so this is urgent!",
        "This is the third time, I need it fixed today.",
    ],
    "normal": ["Please let me know the next steps.", "Thanks for your help."],
    "low": ["No rush at all.", "Whenever you get a chance."],
}

# ---------------------------------------------------------------- order assistant (tool calls)
TOOLS_SYSTEM = (
    "You are Northwind Outfitters' order assistant. Use the tools to look up orders, shipments, "
    "returns and stock. Never guess an order status."
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Get an order's status and items.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "track_shipment",
            "description": "Get the carrier tracking events of an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "start_return",
            "description": "Open a return for an item of an order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "sku": {"type": "string"},
                    "reason": {
                        "type": "string",
                        "enum": ["too_small", "too_large", "defective", "changed_mind"],
                    },
                },
                "required": ["order_id", "sku", "reason"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_stock",
            "description": "Stock of a product in a store.",
            "parameters": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "store": {"type": "string", "enum": STORES},
                },
                "required": ["sku", "store"],
                "additionalProperties": False,
            },
        },
    },
]

# ---------------------------------------------------------------- free text
SUMMARY_SYSTEM = (
    "Summarise the support conversation for the next agent in two or three sentences: "
    "the customer's problem, what was done, and what is still open."
)
ADVISOR_SYSTEM = (
    "You are Trailguide, Northwind Outfitters' gear advisor. The customer's name is {name}. "
    "Today is {date}. Recommend products from the Northwind catalogue, be concise and practical, "
    "and mention safety where it matters."
)
ADVISOR_Q = [
    (
        "What sleeping bag should I take for a {n}-night trip in the Rockies in {month}?",
        "NW-BAG-0C",
    ),
    (
        "I'm starting to hike. Which boots and poles would you suggest for rocky trails?",
        "NW-BOOT-HK",
    ),
    ("Is a 45 litre pack enough for a {n}-day hut-to-hut trek?", "NW-PACK-45"),
    ("What do I need to cook on a {n}-night canoe trip?", "NW-STOVE-1"),
    ("How do I stay dry on a rainy {n}-day coastal hike?", "NW-JKT-RAIN"),
    ("Which tent would you recommend for two people in windy conditions?", "NW-TENT-2P"),
]
# Paraphrase bank: each idea has several phrasings; logged and candidate answers pick different ones.
IDEAS: dict[str, list[str]] = {
    "NW-BAG-0C": [
        "For nights near freezing, the Summit 0°C sleeping bag is the safe choice.",
        "I'd take the Summit 0°C bag: mountain nights in that season can drop close to freezing.",
        "Go with the Summit 0°C sleeping bag, since temperatures at altitude often approach zero at night.",
    ],
    "NW-BOOT-HK": [
        "The Trailhead hiking boots give ankle support and grip on loose rock.",
        "Start with the Trailhead boots; they support your ankles and grip well on rocky ground.",
        "Trailhead hiking boots are a good first pair thanks to their stiff sole and ankle support.",
    ],
    "NW-PACK-45": [
        "A 45 litre pack like the Alpine 45L is enough when huts provide bedding and meals.",
        "Yes, the Alpine 45L works well for hut treks because you won't carry a tent or stove.",
        "The Alpine 45L backpack is plenty if the huts supply food and blankets.",
    ],
    "NW-STOVE-1": [
        "The Ember camp stove is compact and boils water quickly.",
        "Pack the Ember stove: it is light and fast to boil.",
        "I'd bring the Ember camp stove, which is small and efficient.",
    ],
    "NW-JKT-RAIN": [
        "The Stormshell rain jacket keeps you dry and breathes on long climbs.",
        "Wear the Stormshell jacket; it is fully waterproof yet breathable.",
        "A Stormshell rain jacket is the key piece, as it is waterproof and vents well.",
    ],
    "NW-TENT-2P": [
        "The Ridgeline 2-person tent has a low profile that handles wind well.",
        "I'd pick the Ridgeline 2P, whose low dome shape sheds strong wind.",
        "Choose the Ridgeline 2-person tent: it is stable in gusts and quick to pitch.",
    ],
    "pad": [
        "Pair it with the Cloudrest insulated pad so the cold ground doesn't chill you.",
        "Add the Cloudrest insulated sleeping pad, because the ground steals heat at night.",
        "Bring the Cloudrest pad too; insulation from the ground matters as much as the bag.",
    ],
    "safety": [
        "Always check the weather forecast and tell someone your route before you leave.",
        "Before you go, check the forecast and leave your itinerary with a friend.",
        "For safety, share your plan with someone and watch the forecast closely.",
    ],
    "water": [
        "The ClearFlow filter lets you drink safely from streams.",
        "Carry the ClearFlow water filter so you can refill from streams safely.",
        "A ClearFlow filter means you can treat stream water instead of carrying it all.",
    ],
    "lamp": [
        "Keep a Lumen 400 headlamp in the lid pocket for early starts.",
        "A Lumen 400 headlamp is worth packing for dark mornings.",
        "Don't forget a headlamp such as the Lumen 400.",
    ],
}
EXTRAS = ["pad", "water", "lamp"]

SUMMARY_CASES = [
    (
        "late delivery of order {order}",
        "tracking showed the parcel stuck at the {store} depot",
        "the agent opened a carrier investigation",
        "the customer is waiting for an update within 48 hours",
    ),
    (
        "a leaking {product}",
        "photos confirmed a seam defect",
        "a replacement was approved",
        "the replacement ships once the return label is used",
    ),
    (
        "a double charge on order {order}",
        "the payment log showed two captures",
        "one capture was refunded",
        "the refund takes three to five business days to appear",
    ),
    (
        "a password reset that never arrived",
        "the e-mail address on file had a typo",
        "the address was corrected",
        "the customer still needs to confirm the new address",
    ),
    (
        "a wrong size {product}",
        "the customer wants the next size up",
        "an exchange was started",
        "stock of the larger size must be confirmed",
    ),
]
SUMMARY_PHRASES = [
    [
        "The customer contacted us about {a}.",
        "{A_cap} was the customer's issue.",
        "The customer reported {a}.",
    ],
    ["On checking, {b}.", "Investigation found that {b}.", "We found that {b}."],
    ["In response, {c}.", "As a fix, {c}.", "To resolve it, {c}."],
    ["Still open: {d}.", "Next step: {d}.", "Pending: {d}."],
]


def order_id(rng: random.Random) -> str:
    return f"NW-{rng.randint(10000, 99999)}"


def chat_request(system: str, user: str, **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "model": BASELINE_MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    req.update(extra)
    return req


def completion(
    rng: random.Random,
    n: int,
    model: str,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    prompt_chars: int = 400,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    out_chars = len(content or "") + sum(
        len(t["function"]["arguments"]) + 20 for t in tool_calls or []
    )
    prompt_tokens, completion_tokens = prompt_chars // 4 + 8, max(1, out_chars // 4)
    return {
        "id": f"chatcmpl-demo{n:05d}{rng.randint(0, 10**6):06d}",
        "object": "chat.completion",
        "created": int((START + timedelta(minutes=37 * n)).timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": msg,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_demo",
    }


def tool_call(rng: random.Random, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_{rng.randint(0, 16**12):012x}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def build_traffic(rng: random.Random) -> list[dict[str, Any]]:
    """Return logged exchanges: dicts with request, response, metadata, and a hidden 'truth'."""
    rows: list[dict[str, Any]] = []

    def fill(tpl: str) -> str:
        _sku, product = rng.choice(PRODUCTS)
        return tpl.format(
            order=order_id(rng),
            amount=f"{rng.randint(19, 480)}.{rng.randint(0, 99):02d}",
            product=product,
            date=f"2026-{rng.randint(8, 10):02d}-{rng.randint(1, 28):02d}",
            email=f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@example.com",
        )

    for _ in range(90):
        label = rng.choice(list(TRIAGE))
        user = fill(rng.choice(TRIAGE[label]))
        rows.append(
            {
                "feature": "ticket-triage",
                "kind": "label",
                "truth": label,
                "request": chat_request(TRIAGE_SYSTEM, user, temperature=0, max_tokens=5),
                "content": label,
            }
        )

    for _ in range(60):
        issue = rng.choice(list(EXTRACT_MAILS))
        priority = rng.choice(["low", "normal", "normal", "high"])
        sku, product = rng.choice(PRODUCTS)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        has_order = rng.random() > 0.1
        oid = order_id(rng) if has_order else None
        qty = rng.randint(1, 3)
        mail = EXTRACT_MAILS[issue].format(
            name=name,
            order=oid or "(I lost the number)",
            product=product,
            sku=sku,
            qty=qty,
            detail=rng.choice(DETAILS[priority]),
        )
        truth = {
            "order_id": oid,
            "customer_name": name,
            "items": [{"sku": sku, "quantity": qty}],
            "issue": issue,
            "priority": priority,
        }
        rf = {
            "type": "json_schema",
            "json_schema": {"name": "order_ticket", "strict": True, "schema": EXTRACT_SCHEMA},
        }
        rows.append(
            {
                "feature": "order-extraction",
                "kind": "json",
                "truth": truth,
                "request": chat_request(EXTRACT_SYSTEM, mail, temperature=0, response_format=rf),
                "content": json.dumps(truth),
            }
        )

    for _ in range(60):
        r = rng.random()
        oid = order_id(rng)
        sku, product = rng.choice(PRODUCTS)
        if r < 0.3:
            user, calls = f"Where is my order {oid}?", [("track_shipment", {"order_id": oid})]
        elif r < 0.5:
            user, calls = (
                f"What's in order {oid} and has it shipped?",
                [("lookup_order", {"order_id": oid})],
            )
        elif r < 0.7:
            reason = rng.choice(["too_small", "too_large", "defective", "changed_mind"])
            words = {
                "too_small": "is too small",
                "too_large": "is too big",
                "defective": "broke on day one",
                "changed_mind": "isn't what I want after all",
            }[reason]
            user = f"The {product} ({sku}) from order {oid} {words}. I want to return it."
            calls = [("start_return", {"order_id": oid, "sku": sku, "reason": reason})]
        else:
            s1, s2 = rng.sample(STORES[:4], 2)
            user = (
                f"Do the {s1.title()} and {s2.title()} stores have the {product} ({sku}) in stock?"
            )
            calls = [
                ("check_stock", {"sku": sku, "store": s1}),
                ("check_stock", {"sku": sku, "store": s2}),
            ]
        rows.append(
            {
                "feature": "order-assistant",
                "kind": "tools",
                "truth": calls,
                "request": chat_request(
                    TOOLS_SYSTEM,
                    user,
                    tools=TOOLS,
                    tool_choice="auto",
                    parallel_tool_calls=True,
                    temperature=0.2,
                ),
            }
        )

    for _ in range(50):
        case = rng.choice(SUMMARY_CASES)
        sku, product = rng.choice(PRODUCTS)
        vals = [
            c.format(order=order_id(rng), product=product, store=rng.choice(STORES[:4]))
            for c in case
        ]
        transcript = (
            f"Customer: Hi, I have a problem with {vals[0]}.\nAgent: Sorry to hear that, let me check.\n"
            f"Agent: I see that {vals[1]}.\nAgent: I've made sure that {vals[2]}.\n"
            f"Customer: OK, and what now?\nAgent: {vals[3][0].upper() + vals[3][1:]}."
        )
        rows.append(
            {
                "feature": "conversation-summary",
                "kind": "summary",
                "truth": vals,
                "request": chat_request(
                    SUMMARY_SYSTEM, transcript, temperature=0.3, max_tokens=200
                ),
            }
        )

    advice: list[dict[str, Any]] = []
    for i in range(50):
        if i >= 32:
            # customers ask the advisor the same question again: identical requests whose
            # logged answers differ show OpenAI's run-to-run noise on this task too
            advice.append(dict(rng.choice(advice[:32])))
            continue
        name = rng.choice(FIRST)
        day = START + timedelta(days=rng.randint(0, 40))
        q, main = rng.choice(ADVISOR_Q)
        q = q.format(n=rng.randint(2, 7), month=rng.choice(["May", "September", "October"]))
        extras = rng.sample(EXTRAS, 2)
        system = ADVISOR_SYSTEM.format(name=name, date=day.strftime("%Y-%m-%d"))
        # no metadata tag: the tasks stage discovers this task from its system-prompt template
        advice.append(
            {
                "feature": None,
                "kind": "advice",
                "truth": [main, *extras, "safety"],
                "request": chat_request(system, q, temperature=0.7, max_tokens=300),
            }
        )
    rows.extend(advice)
    rng.shuffle(rows)
    return rows


def render_answer(
    row: dict[str, Any], rng: random.Random, quality: float, variant: int | None = None
) -> dict[str, Any]:
    """The answer a model with the given quality gives (quality 1.0 = the logged answer's content)."""
    kind, truth = row["kind"], row["truth"]
    if kind == "label":
        label = truth if rng.random() < quality else CONFUSABLE[truth]
        if rng.random() > quality + 0.08:
            label = label.capitalize() + "."
        return {"content": label}
    if kind == "json":
        obj = json.loads(json.dumps(truth))
        if rng.random() > quality:
            obj["priority"] = {"high": "normal", "normal": "low", "low": "normal"}[obj["priority"]]
        if rng.random() > quality + 0.03:
            obj["issue"] = rng.choice(["damaged", "missing_item", "wrong_item", "late"])
        if rng.random() > quality + 0.05:
            del obj["customer_name"]
        text = json.dumps(obj)
        if rng.random() > quality + 0.04:
            text = f"```json\n{json.dumps(obj, indent=2)}\n```"
        if rng.random() > quality + 0.07:
            text = text[: len(text) // 2]  # cut off: invalid JSON
        return {"content": text}
    if kind == "tools":
        calls = [(n, dict(a)) for n, a in truth]
        if rng.random() > quality + 0.05:
            return {"content": "Let me check that for you. Could you confirm your order number?"}
        if rng.random() > quality:
            _n, a = calls[0]
            if "order_id" in a:
                a["order_id"] = a["order_id"].replace("NW-", "")
            elif "store" in a:
                a["store"] = "online"
        if len(calls) > 1 and rng.random() > quality + 0.02:
            calls = calls[:1]
        if len(calls) > 1 and rng.random() < 0.5:
            calls.reverse()
        return {"tool_calls": [tool_call(rng, n, a) for n, a in calls]}
    if kind == "summary":
        v = [x[0].lower() + x[1:] if i == 0 else x for i, x in enumerate(truth)]
        pick = (lambda i: variant % 3) if variant is not None else (lambda i: rng.randrange(3))
        parts = [
            SUMMARY_PHRASES[i][pick(i)].format(
                a=v[0], A_cap=v[0][0].upper() + v[0][1:], b=v[1], c=v[2], d=v[3]
            )
            for i in range(4)
        ]
        if rng.random() > quality:
            parts = parts[:2] + parts[3:]  # forgets what was done
        if rng.random() > quality:
            parts.insert(0, "Here is a summary of the conversation.")
        return {"content": " ".join(parts)}
    # advice
    ideas = truth if rng.random() < quality else truth[:2]
    sentences = [
        IDEAS[i][(variant if variant is not None else rng.randrange(3)) % 3] for i in ideas
    ]
    if rng.random() > quality:
        sentences.append(
            "I hope this helps, and let me know if you have any other questions about your trip!"
        )
    return {"content": " ".join(sentences)}


def main() -> None:
    rng = random.Random(20261125)
    rows = build_traffic(rng)
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    lines = []
    for n, row in enumerate(rows):
        if row["kind"] == "label":
            ans: dict[str, Any] = {"content": row["content"]}
        elif row["kind"] == "json":
            ans = {"content": row["content"]}
        else:
            # free text: OpenAI phrases the same answer differently from call to call, so the
            # duplicate requests in the log show its run-to-run noise (the noise floor)
            ans = render_answer(row, rng, 1.0)
        ts = START + timedelta(minutes=37 * n + rng.randint(0, 30))
        req = row["request"]
        resp = completion(
            rng,
            n,
            BASELINE_MODEL,
            ans.get("content"),
            ans.get("tool_calls"),
            prompt_chars=len(json.dumps(req)),
        )
        line: dict[str, Any] = {
            "id": f"nw-{n:04d}",
            "timestamp": ts.isoformat(),
            "latency_ms": rng.randint(380, 2400),
            "request": req,
            "response": resp,
        }
        if row["feature"]:
            line["metadata"] = {"feature": row["feature"], "app": "support-console"}
        lines.append(line)
        row["_line"] = line
    (logs / "traffic.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8"
    )
    print(f"wrote {len(lines)} exchanges to {logs / 'traffic.jsonl'}")
    write_recordings(rows)


CANDIDATE_QUALITY = {
    # candidate name in suite.yaml -> (label/json/tools quality, free-text variant, latency range ms)
    "llama-3.1-8b": (0.86, None, (250, 900)),
    "qwen2.5-72b": (0.975, None, (600, 1900)),
}


def write_recordings(rows: list[dict[str, Any]]) -> None:
    import sys

    sys.path.insert(0, str(HERE.parents[1]))
    from migrate_eval.core.suite import load_suite
    from migrate_eval.replay.engine import build_request
    from migrate_eval.replay.providers import get_provider

    suite = load_suite(HERE / "suite.yaml")
    out = HERE / "recordings"
    out.mkdir(exist_ok=True)
    for spec in suite.candidates:
        quality, variant, (lo, hi) = CANDIDATE_QUALITY[spec.name]
        rng = random.Random(f"candidate:{spec.name}")
        identity = get_provider(spec).identity()
        recs = []
        for n, row in enumerate(rows):
            request = build_request(row["_line"]["request"], spec)
            ans = render_answer(row, rng, quality, variant=variant)
            body = completion(
                rng,
                n,
                spec.model,
                ans.get("content"),
                ans.get("tool_calls"),
                prompt_chars=len(json.dumps(request)),
            )
            recs.append(
                {
                    "identity": identity,
                    "request": request,
                    "response": body,
                    "latency_ms": float(rng.randint(lo, hi)),
                }
            )
        path = out / f"{spec.name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        print(f"wrote {len(recs)} recorded answers of {spec.name} to {path}")


if __name__ == "__main__":
    main()
