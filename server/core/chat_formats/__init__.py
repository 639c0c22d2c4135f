"""Chat formats: how each model family writes reasoning and tool calls, and how we read them.

`detect()` (detect.py) names the format of a chat template; `families.py` holds the formats,
each a `ChatFormat` (its output syntax, how a call is written into the history, how a forced
call starts), built from the streaming scanner (scanner.py) and the body parsers
(calls_json.py, calls_xml.py), plus channel-based formats (channels.py).
"""
