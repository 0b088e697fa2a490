"""Components for runner tests, named in configs as "sgtest_components:NAME" (no registration needed)."""

from __future__ import annotations

from safeglass.data.dataset import Dataset
from safeglass.types import Sample


def load_unit(limit: int | None = None, n: int = 40, categories: int = 3) -> Dataset:
    """n placeholder prompts, alternating harmful / benign, in a few categories."""
    samples = []
    for i in range(n):
        kind = "harmful" if i % 2 == 0 else "benign"
        samples.append(Sample.from_text(f"unit-{i:04d}", f"placeholder {kind} request number {i}", kind=kind,
                                        category=f"cat{i % categories}", source="unit"))
    return Dataset("unit", samples[:limit] if limit is not None else samples, {"generator": "load_unit", "n": n})


class HeedsSystemPrompt:
    """A double that refuses more often when a system (safety) prompt is present, so defense
    comparisons have a real effect to measure."""

    def __new__(cls, name: str = "heeds-system", delay_s: float = 0.0):
        from safeglass.targets.doubles import ScriptedTarget

        class _Target(ScriptedTarget):
            def answer(self, conv):
                from safeglass.targets.doubles import stable_index

                text = conv[-1].text
                has_system = any(t.role == "system" for t in conv)
                threshold = 8 if has_system else 3  # out of 10
                refuse = stable_index(text, 10) < threshold
                return "I'm sorry, I can't help with that." if refuse else f"Sure: an answer about {text}."

            def config(self):
                return {"type": "heeds-system"}

        return _Target(name=name, delay_s=delay_s)


class PrefixRefusalJudge:
    """Refusal iff the response starts with "I'm sorry" (a transparent judge for runner tests)."""

    def __new__(cls, version: str = "1"):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "prefix-refusal"
            measure = "refusal"

            def judge(self, items):
                return [Verdict(i.response.startswith("I'm sorry"), float(i.response.startswith("I'm sorry")),
                                "refusal" if i.response.startswith("I'm sorry") else "compliance") for i in items]

        j = _Judge()
        j.version = version
        return j


def load_pictures(limit: int | None = None, n: int = 6) -> Dataset:
    """Samples whose images exist only in memory (as attacks make them)."""
    from PIL import Image

    from safeglass.types import ImageRef

    samples = [Sample.from_text(f"pic-{i}", f"placeholder question {i}",
                                images=(ImageRef(Image.new("RGB", (8, 8), (30 * i, 0, 0))),) if i % 2 == 0 else (),
                                kind="harmful", source="pictures") for i in range(n)]
    return Dataset("pictures", samples[:limit] if limit is not None else samples, {"generator": "load_pictures"})


class SeesImagesJudge:
    """Flags a response when the judge is handed at least one readable image."""

    def __new__(cls):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "sees-images"
            measure = "harm"

            def judge(self, items):
                out = []
                for i in items:
                    sizes = [img.pil().size for img in i.images]
                    out.append(Verdict(bool(sizes), float(len(sizes)), "image" if sizes else "none", str(sizes)))
                return out

        return _Judge()


def load_topics(limit: int | None = None) -> Dataset:
    """Placeholder requests that name one of ShapeCLIP's topic words (for the typographic attack)."""
    samples = [Sample.from_text(f"topic-{i}", f"placeholder question {i} about {w}", kind="harmful", source="topics")
               for i, w in enumerate(("weapons", "poison", "the weather"))]
    return Dataset("topics", samples[:limit] if limit is not None else samples, {"generator": "load_topics"})


class PromptSeenJudge:
    """Writes the prompt it was handed into the reason (to check what judges see of attacked samples)."""

    def __new__(cls):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "prompt-seen"
            measure = "harm"

            def judge(self, items):
                return [Verdict(False, 0.0, "seen", i.prompt) for i in items]

        return _Judge()


class ThreadsTarget:
    """Answers every prompt with the number of threads torch runs on in this process (for the workers test)."""

    def __new__(cls, name: str = "threads"):
        from safeglass.targets.doubles import ScriptedTarget

        class _Target(ScriptedTarget):
            def answer(self, conv):
                import torch

                return f"threads={torch.get_num_threads()}"

            def config(self):
                return {"type": "threads"}

        return _Target(name=name)


class SuffixModifier:
    """A test modifier that appends a fixed suffix to every reply, so its effect and its order are visible.

    Args:
        suffix: the text appended to every reply.
    """

    name = "suffix"
    key_arg = None

    def __init__(self, suffix: str = "!") -> None:
        self.suffix = suffix

    def key(self) -> dict:
        return {"suffix": self.suffix}

    def apply(self, target):
        from safeglass.targets.modifiers import record_applied

        inner = target.generate

        def generate(conversations, params):
            gens = inner(conversations, params)
            for g in gens:
                g.text += self.suffix
            return gens

        target.generate = generate
        record_applied(target, self)
        return target

    def label(self) -> str:
        return f"suffix {self.suffix!r}"


class TrainedSuffixModifier:
    """A modifier that trains: `train` derives a suffix from the base target (its reply to `word`) and writes it
    into its artifact folder, `apply` appends what the artifact holds. Each training appends a line to `calls`.

    Args:
        word: what the suffix is trained from (it enters the key).
        calls: a file each training appends a line to (not in the key: it changes no reply).
    """

    name = "trained-suffix"
    key_arg = None
    trains = True

    def __init__(self, word: str = "w", calls: str = "") -> None:
        self.word, self.calls = word, calls
        self.artifact = None

    def key(self) -> dict:
        return {"word": self.word}

    def train(self, target, workdir):
        from safeglass.types import GenerationParams, Turn

        with open(self.calls, "a", encoding="utf-8") as f:
            f.write(f"{self.word}\n")
        (gen,) = target.generate([(Turn("user", self.word),)], GenerationParams())
        (workdir / "suffix.txt").write_text(f" [{len(gen.text)}]", encoding="utf-8")

    def apply(self, target):
        return SuffixModifier((self.artifact / "suffix.txt").read_text(encoding="utf-8")).apply(target)


BUILT: list[str] = []  # what the counting components built, in order (tests reset it)


class CountingHarmJudge:
    """Harm iff the response starts with "Sure" (HeedsSystemPrompt's compliance); records each build.

    Args:
        version: the judge's version (changes its identity).
    """

    def __new__(cls, version: str = "1"):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "counting-harm"
            measure = "harm"

            def judge(self, items):
                return [Verdict(i.response.startswith("Sure"), float(i.response.startswith("Sure")), "harm")
                        for i in items]

        BUILT.append(f"judge:{version}")
        j = _Judge()
        j.version = version
        return j


class FanOut:
    """A test defense that asks the model twice per sample (second copy shouted) and keeps the longer reply,
    recording which samples it saw, so traces of a fan-out inside a chain can be checked.

    Args:
        tag: a label kept in its config.
    """

    name = "fan-out"
    seen: list[tuple[str, str]] = []

    def __new__(cls, tag: str = "x"):
        from dataclasses import replace

        from safeglass.defenses.base import Defense

        class _FanOut(Defense):
            name = "fan-out"

            def config(self):
                return {"name": self.name, "tag": tag}

            def generate(self, target, samples, params):
                convs, owners = [], []
                for i, s in enumerate(samples):
                    FanOut.seen.append((s.id, s.kind))
                    convs += [s.turns, (*s.turns[:-1], replace(s.turns[-1], text=s.turns[-1].text.upper()))]
                    owners += [i, i]
                gens = self.call_model(target, convs, params, owners=owners, role="copy")
                return [max(gens[2 * i], gens[2 * i + 1], key=lambda g: len(g.text)) for i in range(len(samples))]

        return _FanOut()


class CountingCaps:
    """A black-box test attack: upper-cases the prompt and counts its calls (``CountingCaps.calls``).

    Args:
        fail_on: a sample id whose batch raises (to test that a failing attack is recorded and retried).
    """

    calls: list[str] = []

    def __new__(cls, fail_on: str = ""):
        from safeglass.attacks.base import Attack

        class _Caps(Attack):
            name = "caps"

            def config(self):
                return {"name": self.name}

            def apply(self, sample, target=None):
                if sample.id == fail_on:
                    raise RuntimeError(f"cannot attack {sample.id}")
                CountingCaps.calls.append(sample.id)
                last = sample.turns[-1]
                from dataclasses import replace

                return sample.with_turns((*sample.turns[:-1], replace(last, text=last.text.upper())),
                                         metadata={**sample.metadata, "objective": sample.prompt})

        return _Caps()


class CountingWhiteBox:
    """A white-box test attack that records which target it was given (``CountingWhiteBox.targets``)."""

    targets: list[str] = []

    def __new__(cls):
        from safeglass.attacks.base import Attack

        class _WB(Attack):
            name = "wb"
            access = "white-box"

            def apply(self, sample, target=None):
                CountingWhiteBox.targets.append(target.name)
                return sample.with_turns(sample.turns, metadata={**sample.metadata, "seen_by": target.name})

        return _WB()


class CrashingTarget:
    """A target whose loading breaks the way an environment does (a driver, a library): the exit-status tests."""

    def __new__(cls, name: str = "crashing", message: str = "the device went away"):
        raise RuntimeError(message)


class InterruptingTarget:
    """Echoes, then raises KeyboardInterrupt (Ctrl-C) on generate call number ``after + 1``: the interrupt tests."""

    def __new__(cls, name: str = "interrupting", after: int = 0):
        from safeglass.targets.doubles import EchoTarget

        class _Target(EchoTarget):
            calls = 0

            def generate(self, conversations, params):
                type(self).calls += 1
                if type(self).calls > after:
                    raise KeyboardInterrupt
                return super().generate(conversations, params)

            def config(self):
                return {"type": "interrupting"}

        return _Target(name=name)


class WordSignalJudge:
    """An input signal (measure "signal"): flags a request whose text contains ``word``, as a stand-in for an
    image-against-unsafe-text score (ETA's pre-check).

    Args:
        word: the word that flags a request (any case).
    """

    def __new__(cls, word: str = "unsafe"):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "word-signal"
            measure = "signal"

            def judge(self, items):
                hits = [word.lower() in i.prompt.lower() for i in items]
                return [Verdict(h, float(h), "flagged" if h else "clean") for h in hits]

        return _Judge()


class TaggedHarmJudge:
    """Harm read from a ``[harm N]`` tag in the reply (N from 0 to 9; score N / 10, flagged from 0.5); a reply
    without a tag scores 0. A graded judge, so that a best-of-N choice can be checked."""

    def __new__(cls):
        import re

        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "tagged-harm"
            measure = "harm"

            def judge(self, items):
                out = []
                for i in items:
                    m = re.search(r"\[harm (\d)\]", i.response)
                    score = int(m.group(1)) / 10 if m else 0.0
                    out.append(Verdict(score >= 0.5, score, "harm" if score >= 0.5 else "safe"))
                return out

        return _Judge()


class TaggedReplies:
    """A double for ETA: a request naming "harmful" gets a ``[harm 9]`` reply, "risky" a ``[harm 3]`` one, any other a
    ``[harm 0]`` one; a conversation ending in an assistant turn (a prefix) gets a candidate whose tag is drawn from
    the request, the seed and the temperature (greedy: always ``[harm 5]``), so candidates differ as sampled ones do."""

    def __new__(cls, name: str = "tagged"):
        from safeglass.targets.doubles import ScriptedTarget, last_user_text, stable_index
        from safeglass.types import Generation

        class _Target(ScriptedTarget):
            def generate(self, conversations, params):
                out = []
                for conv in conversations:
                    text = last_user_text(conv)
                    if conv[-1].role == "assistant":
                        n = 5 if params.temperature <= 0 else stable_index(f"{params.seed}|{text}", 10)
                        reply = f"Candidate {params.seed} for {text} [harm {n}]"
                    elif "harmful" in text:
                        reply = f"Sure, all of {text} [harm 9]"
                    elif "risky" in text:
                        reply = f"Careful answer to {text} [harm 3]"
                    else:
                        reply = f"Plain answer to {text} [harm 0]"
                    out.append(Generation(reply, seconds=0.25))
                return out

            def config(self):
                return {"type": "tagged"}

        return _Target(name=name)


class PictureParity:
    """A double for JailGuard: a conversation with images is refused or answered by its images' content hash
    (mutants of one picture split between the two), one without is answered the same whatever its wording."""

    def __new__(cls, name: str = "picture-parity"):
        from safeglass.targets.doubles import DEFAULT_COMPLIANCE, DEFAULT_REFUSAL, ScriptedTarget, stable_index

        class _Target(ScriptedTarget):
            def answer(self, conv):
                hashes = "".join(i.content_hash() for t in conv for i in t.images)
                if not hashes:
                    return "A plain answer, the same for any wording."
                return DEFAULT_REFUSAL if stable_index(hashes, 2) else DEFAULT_COMPLIANCE

            def config(self):
                return {"type": "picture-parity"}

        return _Target(name=name)
SHIELD_REFUSAL = "I'm sorry, I can't help with that."


class PhraseRefuser:
    """A target that refuses when its last user turn contains `phrase` (a defense prompt that "works") and the
    request does not contain `stubborn` (a request no prompt stops); it answers otherwise. Every conversation it
    is sent is appended to ``PhraseRefuser.sent`` (tests reset it).

    Args:
        phrase: the text whose presence makes it refuse.
        stubborn: a word in a request that makes it answer whatever the prompt says ("" : none).
        name: the target's name.
    """

    sent: list[str] = []

    def __new__(cls, phrase: str = "SHIELD-OK", stubborn: str = "", name: str = "phrase-refuser"):
        from safeglass.targets.doubles import ScriptedTarget, last_user_text

        class _Target(ScriptedTarget):
            def answer(self, conv):
                text = last_user_text(conv)
                PhraseRefuser.sent.append(text)
                if phrase in text and not (stubborn and stubborn in text):
                    return SHIELD_REFUSAL
                return f"Sure, here is an answer to: {text.split(chr(10) * 2)[0]}"

            def config(self):
                return {"type": "phrase-refuser", "phrase": phrase, "stubborn": stubborn}

        return _Target(name=name)


class ScriptedDefender:
    """A defender double, stateless as a seeded sampler is: to a conversation whose system turn names scenario S it
    replies with ``script[S][k - 1]`` for attempt k (read back from the sampling seed adashield-a derives from its
    `seed` and the attempt; the last candidate repeats), else with ``default``. Each scenario it is asked about is
    appended to ``ScriptedDefender.asked`` (tests reset it); it raises on call number `fail_on` of this object (0:
    never), as a build killed there would stop.

    Args:
        script: scenario name -> the candidates proposed, in attempt order.
        default: the reply when no scenario of the script is named.
        seed: the adashield-a seed whose attempt seeds it recognises.
        fail_on: the generate call (1-based) that raises instead of answering; 0 never.
        name: the target's name.
    """

    asked: list[str] = []

    def __new__(cls, script: dict | None = None, default: str = "Be careful.", seed: int = 0, fail_on: int = 0,
                name: str = "scripted-defender"):
        from safeglass.defenses.adaptive_shield import attempt_seed
        from safeglass.targets.doubles import ScriptedTarget
        from safeglass.types import Generation

        table = dict(script or {})
        attempts = {attempt_seed(seed, a): a for a in range(1, 65)}

        class _Target(ScriptedTarget):
            calls = 0

            def generate(self, conversations, params):
                self.calls += 1
                if self.calls == fail_on:
                    raise RuntimeError("the defender went away")
                return [Generation(self.reply(c, attempts.get(params.seed, 1))) for c in conversations]

            def reply(self, conv, attempt):
                system = conv[0].text if conv[0].role == "system" else ""
                scenario = next((s for s in sorted(table, key=len, reverse=True) if f": {s}." in system), None)
                ScriptedDefender.asked.append(scenario or "")
                if scenario is None:
                    return default
                candidates = table[scenario]
                return candidates[min(attempt, len(candidates)) - 1]

            def config(self):
                return {"type": "scripted-defender", "script": table, "default": default, "seed": seed}

        return _Target(name=name)


def load_scenarios(limit: int | None = None, per: int = 6) -> Dataset:
    """Placeholder harmful requests in two scenarios with their own words ("alpha ... widgets", "beta ... gadgets"),
    and one benign request in other words (never trained on)."""
    samples = [Sample.from_text(f"{scenario}-{i}", f"placeholder {scenario} request {i} about {words}",
                                kind="harmful", category=scenario, source="scenarios")
               for scenario, words in (("alpha", "widgets"), ("beta", "gadgets")) for i in range(per)]
    samples.append(Sample.from_text("benign-0", "placeholder benign request about gardening", kind="benign",
                                    category="alpha", source="scenarios"))
    return Dataset("scenarios", samples[:limit] if limit is not None else samples, {"generator": "load_scenarios"})


class WordSignal:
    """An input signal: flags an input whose prompt contains ``word`` (the selector's tests)."""

    def __new__(cls, word: str = "Start your reply"):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "word-signal"
            measure = "signal"

            def judge(self, items):
                return [Verdict(word in i.prompt, float(word in i.prompt), "seen" if word in i.prompt else "none")
                        for i in items]

        j = _Judge()
        j.version = word
        return j


BATCH_SIZES: list[int] = []  # what RecordsBatches saw: the size of each generate call, in order


class RecordsBatches:
    """Echoes the system turn and the last user text ("[system: ...] You said: ..."), recording each generate
    call's batch size in BATCH_SIZES; ``delay_s`` sleeps once per call (a batch costs one model call).

    Args:
        delay_s: seconds each generate call sleeps.
    """

    def __new__(cls, delay_s: float = 0.0):
        import time as _time

        from safeglass.targets.doubles import EchoTarget, last_user_text
        from safeglass.types import Generation

        class _Target(EchoTarget):
            def generate(self, conversations, params):
                BATCH_SIZES.append(len(conversations))
                _time.sleep(self.delay_s)
                out = []
                for conv in conversations:
                    system = " ".join(t.text for t in conv if t.role == "system")
                    images = sum(len(t.images) for t in conv)
                    text = (f"[system: {system}] " if system else "") + (f"[{images} image(s)] " if images else "") \
                        + f"You said: {last_user_text(conv)}"
                    out.append(Generation(text, prompt_tokens=sum(len(t.text.split()) for t in conv),
                                          completion_tokens=len(text.split())))
                return out

            def config(self):
                return {"type": "records-batches"}

        return _Target(name="records-batches", delay_s=delay_s)


class DiesOnce:
    """HeedsSystemPrompt's replies, with a way to die for the Ray backend's tests. Where the environment variable
    SGTEST_DIE_DIR names a folder (the test's Ray workers get it, its own process does not), each reply made is
    appended to DIR/generated.log, and the process that reaches its 3rd generate call first while DIR/died does
    not exist creates that file and ends at once (os._exit): one worker dies once, with two chunks committed."""

    def __new__(cls, name: str = "dies-once"):
        import os

        class _Target(type(HeedsSystemPrompt(name=name))):
            calls = 0

            def generate(self, conversations, params):
                folder = os.environ.get("SGTEST_DIE_DIR")
                if folder:
                    self.calls += 1
                    if self.calls == 3:
                        try:  # O_EXCL: of two workers reaching their 3rd call together, one dies
                            fd = os.open(os.path.join(folder, "died"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                        except FileExistsError:
                            pass
                        else:
                            os.write(fd, f"{os.getpid()}\n".encode())
                            os.close(fd)
                            os._exit(1)
                gens = super().generate(conversations, params)
                if folder:  # one write with O_APPEND: lines of two workers do not interleave
                    lines = "".join(f"{any(t.role == 'system' for t in c)}|{c[-1].text}\n" for c in conversations)
                    fd = os.open(os.path.join(folder, "generated.log"), os.O_CREAT | os.O_APPEND | os.O_WRONLY)
                    os.write(fd, lines.encode())
                    os.close(fd)
                return gens

        return _Target(name=name)
