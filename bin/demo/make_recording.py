#!/usr/bin/env python3
"""Regenerates ada.wav and ben.wav from script.json with espeak-ng and sox.

Each speaker gets a 16 kHz mono 16-bit track of the whole meeting: their lines
where they speak, silence while the other speaks, 0.8 s between lines. The
tracks are committed so that `huddle demo` needs no speech synthesiser.
"""
import json, os, subprocess, tempfile, wave

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 16000

script = json.load(open(os.path.join(HERE, "script.json")))
tmp = tempfile.mkdtemp()
clips = []
for i, (who, text) in enumerate(script["lines"]):
    wav, raw = os.path.join(tmp, f"{i}.wav"), os.path.join(tmp, f"{i}.raw")
    subprocess.run(["espeak-ng", "-v", script["speakers"][who]["voice"], "-s", "155", "-w", wav, text], check=True)
    subprocess.run(["sox", wav, "-t", "raw", "-r", str(RATE), "-c", "1", "-e", "signed-integer", "-b", "16", "-L", raw],
                   check=True)
    clips.append((who, open(raw, "rb").read()))
gap = int(RATE * 0.8) * 2
tracks = {k: bytearray(b"\0" * (int(RATE * 0.5) * 2)) for k in script["speakers"]}
for who, pcm in clips:
    for k in tracks:
        tracks[k] += pcm if k == who else b"\0" * len(pcm)
        tracks[k] += b"\0" * gap
for k, pcm in tracks.items():
    with wave.open(os.path.join(HERE, script["speakers"][k]["wav"]), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(bytes(pcm))
