"""Caption metrics exactly as the VSD authors compute them (zhaoyucs/VSD).

Their evaluator (``language_evaluation.CocoEvaluator``) hands every generated caption, together
with *all* reference captions of its record, to pycocoevalcap: PTB tokenisation (Stanford
CoreNLP 3.4.1, lower-cased, punctuation tokens dropped), then corpus-level BLEU-1..4 (``closest``
reference length), METEOR 1.5, ROUGE-L and CIDEr, and SPICE. We run the same pycocoevalcap 1.2
code with three robustness changes that do not alter any score:

* tokenisation runs the same jar, options and punctuation filter as ``PTBTokenizer.tokenize`` but
  checks Java's exit status and that every input line came back (pycocoevalcap silently misaligns
  captions when a text holds a form feed or U+2028, and silently loses all of them when Java is
  missing), writes its temp file outside site-packages, and tokenises each distinct text once;
* METEOR's JVM is ours: its stderr goes to a file (an unread pipe can fill and hang Java), it is
  reused across `CaptionScorer.score` calls (starting it costs ~15 s), its per-caption lines are
  streamed rather than sent one round trip at a time (same lines, same numbers), and it is
  always closed, also after an error (pycocoevalcap's lock would otherwise stay held and the next
  call hang);
* SPICE runs only when its Stanford CoreNLP 3.6.0 jars are already installed: pycocoevalcap
  would download them at first use, and nothing is downloaded at run time here.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Metric names as pycocoevalcap (and the VSD papers' logs) spell them; SPICE is extra."""

# Characters Java or Python treat as line breaks: inside a caption they would shift every later
# caption onto the wrong record, so they become spaces before tokenisation.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
_SENTINEL = "vsdendofinput"


class CaptionMetricsError(RuntimeError):
    """Java or one of the scorers failed; the message says which and why."""


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise CaptionMetricsError(
            "caption metrics need Java ('java' is not on PATH); install a JRE or skip captions"
        )
    return java


# --------------------------------------------------------------------------------------------
# PTB tokenisation
# --------------------------------------------------------------------------------------------


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenise like pycocoevalcap's ``PTBTokenizer`` (same jar, flags, punctuation filter), one
    output per input, in order. Raises `CaptionMetricsError` when Java fails or drops a line."""
    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    if not texts:
        return []
    unique = list(dict.fromkeys(texts))
    jar = os.path.join(os.path.dirname(os.path.abspath(ptb.__file__)), ptb.STANFORD_CORENLP_3_4_1_JAR)
    body = "\n".join(t.translate(_LINE_BREAKS) for t in unique) + "\n" + _SENTINEL + "\n"
    with tempfile.TemporaryDirectory(prefix="vsd-ptb-") as tmp:
        path = os.path.join(tmp, "captions.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(body)
        cmd = [
            _java(),
            "-cp",
            jar,
            "edu.stanford.nlp.process.PTBTokenizer",
            "-encoding",
            "utf-8",
            "-preserveLines",
            "-lowerCase",
            path,
        ]
        proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise CaptionMetricsError(f"PTB tokenizer (java) exited with {proc.returncode}: {' | '.join(tail)}")
    lines = proc.stdout.decode("utf-8", "replace").split("\n")
    if len(lines) <= len(unique) or lines[len(unique)].strip() != _SENTINEL:
        raise CaptionMetricsError(
            f"PTB tokenizer returned {len(lines)} lines for {len(unique)} captions (lines were merged or lost)"
        )
    punct = set(ptb.PUNCTUATIONS)
    tokenized = {
        text: " ".join(w for w in line.rstrip().split(" ") if w not in punct)
        for text, line in zip(unique, lines)
    }
    return [tokenized[t] for t in texts]


# --------------------------------------------------------------------------------------------
# METEOR: pycocoevalcap's METEOR 1.5 jar and protocol over a JVM we own
# --------------------------------------------------------------------------------------------


def _meteor_class():
    from pycocoevalcap.meteor import meteor as meteor_module

    class Meteor(meteor_module.Meteor):
        """pycocoevalcap's METEOR with a process we start, stream to and close."""

        def __init__(self) -> None:  # noqa: D401 - replaces the parent's spawn (stderr PIPE)
            self._stderr = tempfile.TemporaryFile()
            self.meteor_cmd = [
                _java(),
                "-jar",
                "-Xmx2G",
                meteor_module.METEOR_JAR,
                "-",
                "-",
                "-stdio",
                "-l",
                "en",
                "-norm",
            ]
            self.meteor_p = subprocess.Popen(
                self.meteor_cmd,
                cwd=os.path.dirname(os.path.abspath(meteor_module.__file__)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
            self.lock = threading.Lock()

        def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
            """pycocoevalcap's protocol and lines (``SCORE ||| refs ||| hyp`` per caption, then
            ``EVAL ||| stats...``), but the SCORE lines stream from a writer thread instead of one
            round trip each: same numbers, ~10x faster on thousands of captions. A dead JVM ends
            the reads with EOF, raised as ValueError, never a hang."""
            assert gts.keys() == res.keys()
            ids = list(gts.keys())
            lines = []
            for i in ids:
                assert len(res[i]) == 1
                hyp = res[i][0].replace("|||", "").replace("  ", " ")
                lines.append(" ||| ".join(("SCORE", " ||| ".join(gts[i]), hyp)) + "\n")
            proc = self.meteor_p
            failed: list[BaseException] = []

            def write() -> None:
                try:
                    for line in lines:
                        proc.stdin.write(line.encode())
                    proc.stdin.flush()
                except OSError as exc:  # the JVM died; the reader sees EOF
                    failed.append(exc)

            with self.lock:
                writer = threading.Thread(target=write, name="meteor-writer", daemon=True)
                writer.start()
                stats = [proc.stdout.readline().decode().strip() for _ in ids]
                writer.join()
                if failed or not all(stats):
                    raise ValueError(f"METEOR returned {sum(map(bool, stats))} of {len(ids)} statistics")
                proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
                proc.stdin.flush()
                scores = [float(proc.stdout.readline().strip()) for _ in ids]
                score = float(proc.stdout.readline().strip())
            return score, scores

        def stderr_tail(self) -> str:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            return " | ".join(lines[-3:])

        def close(self) -> None:
            proc = getattr(self, "meteor_p", None)
            if proc is None:
                return
            self.meteor_p = None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=5)  # EOF on stdin ends METEOR's -stdio loop
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdout.close()
            self._stderr.close()

        def __del__(self) -> None:
            self.close()

    return Meteor


# --------------------------------------------------------------------------------------------
# SPICE availability
# --------------------------------------------------------------------------------------------


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here (``None`` when it can): pycocoevalcap's SPICE needs the Stanford
    CoreNLP 3.6.0 jars in ``pycocoevalcap/spice/lib`` and would otherwise download them."""
    if shutil.which("java") is None:
        return "'java' is not on PATH"
    from pycocoevalcap.spice import get_stanford_models as gsm

    lib = os.path.join(os.path.dirname(os.path.abspath(gsm.__file__)), gsm.SPICELIB)
    missing = [
        f"{gsm.JAR}{suffix}.jar"
        for suffix in ("", "-models")
        if not os.path.exists(os.path.join(lib, f"{gsm.JAR}{suffix}.jar"))
    ]
    if missing:
        return (
            f"Stanford CoreNLP models not installed ({', '.join(missing)} missing in {lib}); "
            "pycocoevalcap would download them and run-time downloads are off"
        )
    return None


# --------------------------------------------------------------------------------------------
# The scorer
# --------------------------------------------------------------------------------------------


class CaptionScorer:
    """Scores caption sets; keeps the METEOR JVM and the tokenisation cache across calls.

    Use as a context manager (``with CaptionScorer() as s: s.score(...)``) so Java is closed.
    ``spice=None`` runs SPICE when its models are present, ``False`` never.
    """

    def __init__(self, *, spice: bool | None = None) -> None:
        self._spice = spice
        self._meteor = None
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        new = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        self._tokens.update(zip(new, ptb_tokenize(new)))
        return [self._tokens[t] for t in texts]

    def spice_skipped(self) -> str | None:
        """The "SPICE skipped: ..." line, or ``None`` when SPICE will run."""
        if self._spice is False:
            return "SPICE skipped: disabled"
        reason = spice_unavailable_reason()
        return None if reason is None else f"SPICE skipped: {reason}"

    def score(self, predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
        """Corpus-level metrics of ``predictions`` (key -> caption), each against all
        ``references[key]``. Every prediction key needs at least one reference."""
        keys = list(predictions)
        lost = [k for k in keys if not references.get(k)]
        if lost:
            raise ValueError(f"{len(lost)} prediction(s) without references, e.g. {lost[:3]}")
        result: dict = {"n": len(keys), "empty_predictions": 0, **{m: None for m in METRICS}, "SPICE": None}
        result["spice_skipped"] = self.spice_skipped()
        if not keys:
            return result
        ref_texts = [r if isinstance(r, str) else "" for k in keys for r in references[k]]
        hyp_texts = [predictions[k] if isinstance(predictions[k], str) else "" for k in keys]
        tokens = dict(zip(ref_texts + hyp_texts, self.tokenize(ref_texts + hyp_texts)))
        gts = {k: [tokens[r if isinstance(r, str) else ""] for r in references[k]] for k in keys}
        res = {k: [tokens[h]] for k, h in zip(keys, hyp_texts)}
        result["empty_predictions"] = sum(1 for k in keys if not res[k][0].strip())
        result.update(self._score_tokenized(gts, res))
        return result

    def _score_tokenized(self, gts: dict, res: dict) -> dict:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        out: dict = {}
        with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its length ratios
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"Bleu_{i + 1}": float(b) for i, b in enumerate(bleu)})
        out["METEOR"] = self._meteor_score(gts, res)
        out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
        out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        if self.spice_skipped() is None:
            out.update(self._spice_score(gts, res))
        return out

    def _meteor_score(self, gts: dict, res: dict) -> float:
        # METEOR's stdio protocol separates fields with '|||'; a caption holding it would shift them.
        clean = lambda s: " ".join(s.replace("|||", " ").split())  # noqa: E731
        m_gts = {k: [clean(r) for r in v] for k, v in gts.items()}
        m_res = {k: [clean(v[0])] for k, v in res.items()}
        if self._meteor is None:
            self._meteor = _meteor_class()()
        meteor = self._meteor
        try:
            score, _ = meteor.compute_score(m_gts, m_res)
        except (ValueError, OSError) as exc:
            tail = meteor.stderr_tail()
            meteor.close()  # its lock may be held and its stream half read: never reuse it
            self._meteor = None
            raise CaptionMetricsError(f"METEOR (java) failed: {exc}{': ' + tail if tail else ''}") from exc
        return float(score)

    def _spice_score(self, gts: dict, res: dict) -> dict:
        from pycocoevalcap.spice.spice import Spice

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                score, _ = Spice().compute_score(gts, res)
        except (subprocess.CalledProcessError, OSError, ValueError) as exc:
            return {"SPICE": None, "spice_skipped": f"SPICE skipped: SPICE failed ({exc})"}
        return {"SPICE": float(score)}


def caption_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *, spice: bool | None = None
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when installed) of ``predictions`` against all
    ``references`` of each key, as the VSD authors compute them. Starts and closes its own Java;
    use `CaptionScorer` to score several sets with one JVM. When SPICE cannot run, the result's
    ``spice_skipped`` holds the "SPICE skipped: <reason>" line."""
    with CaptionScorer(spice=spice) as scorer:
        return scorer.score(predictions, references)
