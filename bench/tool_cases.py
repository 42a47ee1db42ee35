"""The labelled tool-use set: eight tools and 96 requests with the call each one needs (or none).

Each case is what a user says (typed, or synthesized and spoken when `spoken` is set), the tool and
arguments a correct agent calls, the result the app sends back, and words one of which the spoken
answer to that result must contain. Multi-turn cases carry the earlier turns (`history`, Realtime
conversation items) and test the follow-up: a new call, or an answer with no call.

Argument matching, per field: integers, numbers, booleans and enums must be equal; strings are
compared normalised (case, punctuation and spacing ignored) unless the field is free text, where
`Words(...)` asks only that the given words appear (a message's wording is the model's choice).
Fields a case does not name are not checked; a field named with `ABSENT` must be left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_weather",
     "description": "Current weather for a city: temperature and sky.",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "description": "City name"},
         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
         "required": ["city"]}},
    {"type": "function", "name": "set_timer",
     "description": "Start a countdown timer.",
     "parameters": {"type": "object", "properties": {
         "minutes": {"type": "integer", "description": "Length of the timer in minutes"},
         "label": {"type": "string", "description": "What the timer is for"}},
         "required": ["minutes"]}},
    {"type": "function", "name": "book_table",
     "description": "Reserve a table at a restaurant.",
     "parameters": {"type": "object", "properties": {
         "restaurant": {"type": "string"},
         "party_size": {"type": "integer", "description": "Number of people"},
         "time": {"type": "string", "description": "Time of the booking, e.g. 7 pm"}},
         "required": ["restaurant", "party_size", "time"]}},
    {"type": "function", "name": "lookup_order",
     "description": "Look up the status of a customer's order by its order number.",
     "parameters": {"type": "object", "properties": {
         "order_id": {"type": "string", "description": "The order number"}},
         "required": ["order_id"]}},
    {"type": "function", "name": "send_message",
     "description": "Send a text message to one of the user's contacts.",
     "parameters": {"type": "object", "properties": {
         "contact": {"type": "string", "description": "Who to send it to"},
         "text": {"type": "string", "description": "The message"}},
         "required": ["contact", "text"]}},
    {"type": "function", "name": "convert_currency",
     "description": "Convert an amount of money from one currency to another at today's rate.",
     "parameters": {"type": "object", "properties": {
         "amount": {"type": "number"},
         "from_currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]},
         "to_currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]}},
         "required": ["amount", "from_currency", "to_currency"]}},
    {"type": "function", "name": "create_event",
     "description": "Add an event to the user's calendar.",
     "parameters": {"type": "object", "properties": {
         "title": {"type": "string"},
         "when": {"type": "object", "properties": {
             "day": {"type": "string", "description": "Day, e.g. Monday or tomorrow"},
             "time": {"type": "string", "description": "Time of day, e.g. 3 pm"}},
             "required": ["day", "time"]}},
         "required": ["title", "when"]}},
    {"type": "function", "name": "play_music",
     "description": "Play music: a song, an artist or a genre.",
     "parameters": {"type": "object", "properties": {
         "query": {"type": "string", "description": "What to play"},
         "shuffle": {"type": "boolean"}},
         "required": ["query"]}},
]


@dataclass(frozen=True)
class Words:
    """A free-text field: these words must appear (in any order, any case)."""

    words: tuple[str, ...]

    def __init__(self, *words: str) -> None:
        object.__setattr__(self, "words", words)


ABSENT = object()  # the field must not be sent


@dataclass(frozen=True)
class Case:
    id: str
    request: str
    tool: str | None  # the tool a correct agent calls; None: it answers without one
    args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None  # what the app answers the call with
    said: tuple[str, ...] = ()  # the spoken answer to `result` contains one of these
    history: tuple[dict[str, Any], ...] = ()
    spoken: bool = False  # also run as synthesized speech

    @property
    def kind(self) -> str:
        if self.history:
            return "multi_turn"
        return "call" if self.tool else "no_tool"


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _value_matches(want: Any, got: Any) -> bool:
    if isinstance(want, Words):
        have = set(_norm(got).split())
        return all(_norm(w) in have for w in want.words)
    if isinstance(want, dict):
        return isinstance(got, dict) and args_match(want, got)
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, (int, float)):
        return isinstance(got, (int, float)) and float(got) == float(want)
    if isinstance(want, tuple):  # alternatives
        return any(_value_matches(w, got) for w in want)
    return isinstance(got, str) and _norm(got) == _norm(want)


def args_match(want: dict[str, Any], got: dict[str, Any]) -> bool:
    for key, value in want.items():
        if value is ABSENT:
            if key in got:
                return False
        elif key not in got or not _value_matches(value, got[key]):
            return False
    return True


def spoken_correctly(case: Case, transcript: str) -> bool:
    text = _norm(transcript)
    return any(_norm(w) in text for w in case.said)


# -- helpers for multi-turn histories -------------------------------------------------------------
def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def _call(call_id: str, name: str, args: dict[str, Any], result: dict[str, Any]
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"type": "function_call", "call_id": call_id, "name": name, "arguments": json.dumps(args)},
            {"type": "function_call_output", "call_id": call_id, "output": json.dumps(result)})


def _done(question: str, call_id: str, name: str, args: dict[str, Any], result: dict[str, Any],
          answer: str) -> tuple[dict[str, Any], ...]:
    """A finished earlier exchange: question, call, result, spoken answer."""
    return (_user(question), *_call(call_id, name, args, result), _assistant(answer))


W = {"temperature_c": 21, "sky": "sunny"}

CASES: list[Case] = [
    # get_weather
    Case("w1", "What's the weather like in Oslo?", "get_weather", {"city": "Oslo"}, W, ("21", "sunny"), spoken=True),
    Case("w2", "Is it raining in Paris right now?", "get_weather", {"city": "Paris"},
         {"temperature_c": 14, "sky": "rain"}, ("rain",), spoken=True),
    Case("w3", "How warm is it in Tokyo today?", "get_weather", {"city": "Tokyo"},
         {"temperature_c": 28, "sky": "clear"}, ("28",), spoken=True),
    Case("w4", "Tell me the weather in Berlin in fahrenheit.", "get_weather",
         {"city": "Berlin", "unit": "fahrenheit"}, {"temperature_f": 64, "sky": "cloudy"}, ("64", "cloud")),
    Case("w5", "Do I need an umbrella in London today?", "get_weather", {"city": "London"},
         {"temperature_c": 12, "sky": "heavy rain"}, ("rain", "umbrella", "yes"), spoken=True),
    Case("w6", "What's the temperature in Madrid in celsius?", "get_weather",
         {"city": "Madrid", "unit": "celsius"}, {"temperature_c": 33, "sky": "sunny"}, ("33",)),
    Case("w7", "Weather in Rome, please.", "get_weather", {"city": "Rome"},
         {"temperature_c": 25, "sky": "sunny"}, ("25", "sunny")),
    Case("w8", "Is it cold in Chicago at the moment?", "get_weather", {"city": "Chicago"},
         {"temperature_c": -3, "sky": "snow"}, ("3", "snow", "cold"), spoken=True),
    Case("w9", "Should I wear a jacket in Dublin today?", "get_weather", {"city": "Dublin"},
         {"temperature_c": 9, "sky": "windy"}, ("9", "wind", "jacket", "yes")),
    Case("w10", "How hot is it in Cairo?", "get_weather", {"city": "Cairo"},
         {"temperature_c": 38, "sky": "clear"}, ("38",)),
    # set_timer
    Case("t1", "Set a timer for five minutes.", "set_timer", {"minutes": 5}, {"ok": True, "minutes": 5},
         ("5", "five", "set"), spoken=True),
    Case("t2", "Start a ten minute timer for the pasta.", "set_timer",
         {"minutes": 10, "label": Words("pasta")}, {"ok": True, "minutes": 10}, ("10", "ten", "pasta"), spoken=True),
    Case("t3", "Remind me in twenty minutes to check the oven with a timer.", "set_timer", {"minutes": 20},
         {"ok": True, "minutes": 20}, ("20", "twenty")),
    Case("t4", "Timer, three minutes, for my tea.", "set_timer", {"minutes": 3, "label": Words("tea")},
         {"ok": True, "minutes": 3}, ("3", "three", "tea")),
    Case("t5", "Can you set a timer for an hour?", "set_timer", {"minutes": 60},
         {"ok": True, "minutes": 60}, ("60", "hour", "sixty"), spoken=True),
    Case("t6", "Count down fifteen minutes for me.", "set_timer", {"minutes": 15},
         {"ok": True, "minutes": 15}, ("15", "fifteen")),
    Case("t7", "I need a 45 minute timer for the laundry.", "set_timer",
         {"minutes": 45, "label": Words("laundry")}, {"ok": True, "minutes": 45}, ("45", "forty")),
    Case("t8", "Set a two minute timer.", "set_timer", {"minutes": 2}, {"ok": True, "minutes": 2},
         ("2", "two")),
    # book_table
    Case("b1", "Book a table for two at Luigi's at 7 pm.", "book_table",
         {"restaurant": ("Luigi's", "Luigis", "Luigi"), "party_size": 2, "time": ("7 pm", "7pm", "19:00", "7:00 pm")},
         {"confirmed": True, "table": 12}, ("confirm", "booked", "12", "reserved")),
    Case("b2", "Reserve a table at The Golden Dragon for four people at 8 pm.", "book_table",
         {"restaurant": ("The Golden Dragon", "Golden Dragon"), "party_size": 4,
          "time": ("8 pm", "8pm", "20:00", "8:00 pm")},
         {"confirmed": True}, ("confirm", "booked", "reserved")),
    Case("b3", "Can you get us a table for six at Nopa at 6:30 pm?", "book_table",
         {"restaurant": "Nopa", "party_size": 6, "time": ("6:30 pm", "6 30 pm", "18:30", "6:30pm")},
         {"confirmed": False, "reason": "fully booked"}, ("full", "booked", "not", "unable", "sorry")),
    Case("b4", "I'd like to book Chez Marie for three at 9 pm tonight.", "book_table",
         {"restaurant": "Chez Marie", "party_size": 3}, {"confirmed": True}, ("confirm", "booked", "reserved")),
    Case("b5", "Table for one at Sakura at noon, please.", "book_table",
         {"restaurant": "Sakura", "party_size": 1}, {"confirmed": True}, ("confirm", "booked", "reserved")),
    Case("b6", "Make a dinner reservation at Bella Vista for five people at 7:30 pm.", "book_table",
         {"restaurant": "Bella Vista", "party_size": 5}, {"confirmed": True}, ("confirm", "booked", "reserved")),
    Case("b7", "Book Luigi's for eight at 8 pm on my name.", "book_table",
         {"restaurant": ("Luigi's", "Luigis", "Luigi"), "party_size": 8}, {"confirmed": True},
         ("confirm", "booked", "reserved")),
    # lookup_order
    Case("o1", "Where is my order A1234?", "lookup_order", {"order_id": "A1234"},
         {"status": "shipped", "eta": "Thursday"}, ("shipped", "thursday")),
    Case("o2", "Can you check the status of order 55821?", "lookup_order", {"order_id": "55821"},
         {"status": "delivered"}, ("delivered",)),
    Case("o3", "Has order number 90017 shipped yet?", "lookup_order", {"order_id": "90017"},
         {"status": "processing"}, ("processing", "not yet", "not")),
    Case("o4", "What's happening with my order B-772?", "lookup_order", {"order_id": ("B-772", "B772")},
         {"status": "out for delivery"}, ("out for delivery", "delivery")),
    Case("o5", "Track order 31415 for me.", "lookup_order", {"order_id": "31415"},
         {"status": "shipped", "eta": "tomorrow"}, ("shipped", "tomorrow")),
    Case("o6", "I ordered something last week, order 77777. Is it coming?", "lookup_order",
         {"order_id": "77777"}, {"status": "delayed", "eta": "Monday"}, ("delayed", "monday")),
    Case("o7", "Look up order 12345 please.", "lookup_order", {"order_id": "12345"},
         {"status": "cancelled"}, ("cancel",)),
    # send_message
    Case("m1", "Text Anna that I'm running late.", "send_message",
         {"contact": "Anna", "text": Words("late")}, {"sent": True}, ("sent", "anna", "done")),
    Case("m2", "Send a message to Bob saying see you at noon.", "send_message",
         {"contact": "Bob", "text": Words("noon")}, {"sent": True}, ("sent", "bob", "done")),
    Case("m3", "Tell my mom I'll call her tonight.", "send_message",
         {"contact": ("mom", "my mom", "Mom"), "text": Words("tonight")}, {"sent": True},
         ("sent", "mom", "done")),
    Case("m4", "Message David: the meeting moved to three.", "send_message",
         {"contact": "David", "text": Words("meeting")}, {"sent": True}, ("sent", "david", "done")),
    Case("m5", "Can you text Sarah happy birthday?", "send_message",
         {"contact": "Sarah", "text": Words("birthday")}, {"sent": True}, ("sent", "sarah", "done"), spoken=True),
    Case("m6", "Let Tom know I'm outside.", "send_message",
         {"contact": "Tom", "text": Words("outside")}, {"sent": True}, ("sent", "tom", "done")),
    Case("m7", "Send Lisa a text that dinner is ready.", "send_message",
         {"contact": "Lisa", "text": Words("dinner")}, {"sent": True}, ("sent", "lisa", "done")),
    # convert_currency
    Case("c1", "How much is 100 dollars in euros?", "convert_currency",
         {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}, {"result": 92.4},
         ("92",), spoken=True),
    Case("c2", "Convert 50 euros to pounds.", "convert_currency",
         {"amount": 50, "from_currency": "EUR", "to_currency": "GBP"}, {"result": 42.1}, ("42",)),
    Case("c3", "What's 2000 yen in US dollars?", "convert_currency",
         {"amount": 2000, "from_currency": "JPY", "to_currency": "USD"}, {"result": 13.5}, ("13",)),
    Case("c4", "How many dollars do I get for 250 pounds?", "convert_currency",
         {"amount": 250, "from_currency": "GBP", "to_currency": "USD"}, {"result": 317.5}, ("317",)),
    Case("c5", "Change 10 dollars into yen.", "convert_currency",
         {"amount": 10, "from_currency": "USD", "to_currency": "JPY"}, {"result": 1480}, ("1480", "1,480", "thousand")),
    Case("c6", "What is 75 euros in dollars today?", "convert_currency",
         {"amount": 75, "from_currency": "EUR", "to_currency": "USD"}, {"result": 81.2}, ("81",)),
    Case("c7", "Convert 1000 pounds to euros.", "convert_currency",
         {"amount": 1000, "from_currency": "GBP", "to_currency": "EUR"}, {"result": 1187}, ("1187", "1,187", "thousand")),
    # create_event
    Case("e1", "Add a dentist appointment on Monday at 3 pm to my calendar.", "create_event",
         {"title": Words("dentist"), "when": {"day": "Monday", "time": ("3 pm", "3pm", "15:00", "3:00 pm")}},
         {"created": True}, ("added", "created", "calendar", "monday")),
    Case("e2", "Put lunch with Maria on Friday at noon in my calendar.", "create_event",
         {"title": Words("lunch"), "when": {"day": "Friday"}}, {"created": True},
         ("added", "created", "calendar", "friday")),
    Case("e3", "Schedule a team meeting tomorrow at 10 am.", "create_event",
         {"title": Words("meeting"), "when": {"day": "tomorrow", "time": ("10 am", "10am", "10:00", "10:00 am")}},
         {"created": True}, ("added", "created", "scheduled", "calendar", "tomorrow"), spoken=True),
    Case("e4", "Create an event called yoga class on Wednesday at 6 pm.", "create_event",
         {"title": Words("yoga"), "when": {"day": "Wednesday"}}, {"created": True},
         ("added", "created", "calendar", "wednesday")),
    Case("e5", "Add my flight to Boston on Sunday at 7 am to the calendar.", "create_event",
         {"title": Words("flight"), "when": {"day": "Sunday"}}, {"created": True},
         ("added", "created", "calendar", "sunday")),
    Case("e6", "Remind me of the parent teacher meeting on Thursday at 5 pm in my calendar.", "create_event",
         {"title": Words("teacher"), "when": {"day": "Thursday"}}, {"created": True},
         ("added", "created", "calendar", "thursday")),
    # play_music
    Case("p1", "Play some jazz.", "play_music", {"query": Words("jazz")}, {"playing": "Jazz Classics"},
         ("jazz", "playing"), spoken=True),
    Case("p2", "Put on Bohemian Rhapsody by Queen.", "play_music", {"query": Words("bohemian")},
         {"playing": "Bohemian Rhapsody"}, ("bohemian", "playing")),
    Case("p3", "Shuffle my Taylor Swift songs.", "play_music",
         {"query": Words("taylor", "swift"), "shuffle": True}, {"playing": "Taylor Swift", "shuffle": True},
         ("taylor", "playing", "shuffl")),
    Case("p4", "I want to hear some classical music.", "play_music", {"query": Words("classical")},
         {"playing": "Classical Essentials"}, ("classical", "playing")),
    Case("p5", "Play the Beatles.", "play_music", {"query": Words("beatles")}, {"playing": "The Beatles"},
         ("beatles", "playing"), spoken=True),
    Case("p6", "Can you play something relaxing, like lo-fi beats?", "play_music", {"query": Words("lo")},
         {"playing": "Lo-fi Beats"}, ("lo", "playing")),
    Case("p7", "Play rock music on shuffle.", "play_music", {"query": Words("rock"), "shuffle": True},
         {"playing": "Rock Anthems"}, ("rock", "playing")),
    # no tool needed
    Case("n1", "Tell me a joke about cats.", None, spoken=True),
    Case("n2", "What's the capital of France?", None, spoken=True),
    Case("n3", "How are you today?", None, spoken=True),
    Case("n4", "Thank you, that's all.", None),
    Case("n5", "What is two plus two?", None),
    Case("n6", "Can you explain what a black hole is in one sentence?", None),
    Case("n7", "Say hello to my friend Sam.", None),
    Case("n8", "What's a good name for a golden retriever?", None, spoken=True),
    Case("n9", "Who wrote Romeo and Juliet?", None),
    Case("n10", "Good morning!", None, spoken=True),
    Case("n11", "How do you say thank you in Spanish?", None),
    Case("n12", "Give me a tip for sleeping better.", None),
    Case("n13", "What can you do?", None),
    Case("n14", "Is a tomato a fruit or a vegetable?", None),
    Case("n15", "Spell the word necessary.", None),
    Case("n16", "Never mind.", None),
    Case("n17", "How many legs does a spider have?", None),
    Case("n18", "What's your name?", None),
    Case("n19", "Recommend a book for a long flight.", None),
    Case("n20", "Why is the sky blue?", None),
    # multi-turn: a finished exchange, then the follow-up
    Case("f1", "And in Stockholm?", "get_weather", {"city": "Stockholm"},
         {"temperature_c": 15, "sky": "cloudy"}, ("15", "cloud"),
         history=_done("What's the weather in Oslo?", "h1", "get_weather", {"city": "Oslo"}, W,
                       "It's 21 degrees and sunny in Oslo.")),
    Case("f2", "Thanks, that's great.", None,
         history=_done("What's the weather in Oslo?", "h2", "get_weather", {"city": "Oslo"}, W,
                       "It's 21 degrees and sunny in Oslo.")),
    Case("f3", "Make it fifteen minutes instead.", "set_timer", {"minutes": 15},
         {"ok": True, "minutes": 15}, ("15", "fifteen"),
         history=_done("Set a timer for ten minutes.", "h3", "set_timer", {"minutes": 10},
                       {"ok": True, "minutes": 10}, "Your ten minute timer is running.")),
    Case("f4", "Then text Anna that we have a table at eight.", "send_message",
         {"contact": "Anna", "text": Words("table")}, {"sent": True}, ("sent", "anna", "done"),
         history=_done("Book a table for two at Luigi's at 8 pm.", "h4", "book_table",
                       {"restaurant": "Luigi's", "party_size": 2, "time": "8 pm"}, {"confirmed": True},
                       "Your table for two at Luigi's at 8 pm is booked.")),
    Case("f5", "When will it arrive?", None,
         history=_done("Where is order 55821?", "h5", "lookup_order", {"order_id": "55821"},
                       {"status": "shipped", "eta": "Friday"}, "Order 55821 has shipped.")),
    Case("f6", "And how much is that in pounds?", "convert_currency",
         {"amount": 100, "from_currency": "USD", "to_currency": "GBP"}, {"result": 78.9}, ("78",),
         history=_done("How much is 100 dollars in euros?", "h6", "convert_currency",
                       {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}, {"result": 92.4},
                       "100 dollars is about 92 euros.")),
    Case("f7", "Now play some jazz while I cook.", "play_music", {"query": Words("jazz")},
         {"playing": "Jazz Classics"}, ("jazz", "playing"),
         history=_done("Set a timer for twenty minutes.", "h7", "set_timer", {"minutes": 20},
                       {"ok": True, "minutes": 20}, "Your twenty minute timer is running.")),
    Case("f8", "Great, thank you!", None,
         history=_done("Play the Beatles.", "h8", "play_music", {"query": "The Beatles"},
                       {"playing": "The Beatles"}, "Playing The Beatles.")),
    Case("f9", "Is it warmer in Lisbon?", "get_weather", {"city": "Lisbon"},
         {"temperature_c": 24, "sky": "sunny"}, ("24", "warmer", "yes"),
         history=_done("How warm is it in Madrid?", "h9", "get_weather", {"city": "Madrid"},
                       {"temperature_c": 19, "sky": "cloudy"}, "It's 19 degrees and cloudy in Madrid.")),
    Case("f10", "Also add it to my calendar for Saturday at 8 pm.", "create_event",
         {"when": {"day": "Saturday"}}, {"created": True}, ("added", "calendar", "saturday", "created"),
         history=_done("Book a table for four at Nopa on Saturday at 8 pm.", "h10", "book_table",
                       {"restaurant": "Nopa", "party_size": 4, "time": "8 pm"}, {"confirmed": True},
                       "Your table for four at Nopa is booked.")),
]
