"""Built-in corpus readers, one small class per corpus.

File naming facts come from each corpus's documentation and EmoBox's file lists. Every
reader accepts any audio extension and matches on the file stem and the folders above it,
so the usual variants of a corpus's top folder (``wav/``, ``Audio_Speech_Actors_01-24/``,
``downloads/<corpus>/`` ...) do not matter. Intensities are written as ``low`` /
``normal`` / ``high``.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from emolingua.audio import is_audio_path
from emolingua.corpora.base import CorpusReader, Utterance
from emolingua.taxonomy import rating_to_unit


class EmoDB(CorpusReader):
    name = "emodb"
    language, language_name = "de", "German"
    labels = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
    pattern = r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<label>[WLEAFTN])(?P<version>[a-z])"
    citation = "Burkhardt et al., A database of German emotional speech, Interspeech 2005"
    _GENDER = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m",
               "13": "f", "14": "f", "15": "m", "16": "f"}  # fmt: skip

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(
            label_native=m["label"], speaker=m["speaker"], gender=self._GENDER.get(m["speaker"]), text_id=m["text"]
        )


class EMOVO(CorpusReader):
    name = "emovo"
    language, language_name = "it", "Italian"
    labels = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear", "rab": "angry",
              "sor": "surprise", "tri": "sad"}  # fmt: skip
    pattern = r"(?i)(?P<label>dis|gio|neu|pau|rab|sor|tri)-(?P<speaker>[fm][1-3])-(?P<text>[a-z]+\d*)"
    citation = "Costantini et al., EMOVO corpus: an Italian emotional speech database, LREC 2014"

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        speaker = m["speaker"].lower()
        return Utterance(label_native=m["label"].lower(), speaker=speaker, gender=speaker[0], text_id=m["text"].lower())


class Urdu(CorpusReader):
    name = "urdu"
    language, language_name = "ur", "Urdu"
    labels = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
    pattern = r"(?P<speaker>S(?P<gender>[MF])\d+)_F\d+_(?P<label>[AHNS])\d+"
    citation = "Latif et al., Cross lingual speech emotion recognition: Urdu vs. Western languages, FIT 2018"
    notes = "Speaker from the stem's first token (S + gender + number); the middle token is kept in the key only."

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(label_native=m["label"], speaker=m["speaker"], gender=m["gender"].lower())


class CASIA(CorpusReader):
    name = "casia"
    language, language_name = "zh", "Mandarin Chinese"
    labels = {"angry": "angry", "fear": "fear", "happy": "happy", "neutral": "neutral", "sad": "sad",
              "surprise": "surprise"}  # fmt: skip
    pattern = r"\d+"
    citation = "CASIA Chinese emotional speech corpus (Institute of Automation, Chinese Academy of Sciences)"
    notes = "Layout speaker/emotion/sentence; stems repeat across folders, so the key is the last three parts."
    _GENDER = {"liuchanhg": "f", "wangzhe": "m", "zhaoquanyin": "f", "zhaozuoxiang": "m"}

    def parse(self, path: Path) -> Utterance | None:
        if self.match(path) is None or len(path.parts) < 3:
            return None
        speaker, emotion = path.parent.parent.name, path.parent.name.lower()
        if speaker.lower() not in self._GENDER or emotion not in self.labels:
            return None
        return Utterance(
            label_native=emotion,
            speaker=speaker,
            gender=self._GENDER[speaker.lower()],
            text_id=path.stem,
            key=f"{speaker}/{emotion}/{path.stem}",
        )


class RAVDESS(CorpusReader):
    name = "ravdess"
    language, language_name = "en", "English (North American)"
    labels = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
              "07": "disgust", "08": "surprise"}  # fmt: skip
    pattern = (
        r"(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<label>0[1-8])-(?P<intensity>0[12])"
        r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d\d)"
    )
    citation = "Livingstone & Russo, The Ryerson Audio-Visual Database of Emotional Speech and Song, PLoS ONE 2018"
    notes = "Speech and song files are both read (channel 01 / 02 in the stem); odd actors are male."

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        actor = m["actor"]
        return Utterance(
            label_native=m["label"],
            speaker=actor,
            gender="m" if int(actor) % 2 else "f",
            intensity="normal" if m["intensity"] == "01" else "high",
            text_id=m["statement"] if m["channel"] == "01" else f"song{m['statement']}",
        )


class BAVED(CorpusReader):
    name = "baved"
    language, language_name = "ar", "Arabic"
    labels = {"0": "", "1": "neutral", "2": ""}
    pattern = r"(?P<speaker>\d+)-(?P<gender>[mf])-(?P<age>\d+)-(?P<word>\d)-(?P<level>[012])-(?P<take>\d+)"
    citation = "Aouf, BAVED: Basic Arabic Vocal Emotions Dataset, 2019"
    notes = "No emotion categories: intensity level 0 low, 1 neutral (normal), 2 high; label empty except neutral."
    _LEVELS = {"0": "low", "1": "normal", "2": "high"}

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(
            label_native=m["level"],
            speaker=m["speaker"],
            gender=m["gender"],
            intensity=self._LEVELS[m["level"]],
            text_id=m["word"],
        )


# -- helpers shared by the readers below ---------------------------------------------------


def _gender_word(raw: str | None) -> str | None:
    """``"m"`` / ``"f"`` from Male / Female / M / F (any case); ``None`` otherwise."""
    word = (raw or "").strip().lower()
    if word in {"m", "male", "man"}:
        return "m"
    if word in {"f", "female", "woman"}:
        return "f"
    return None


class TESS(CorpusReader):
    name = "tess"
    language, language_name = "en", "English (Canadian)"
    labels = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
              "ps": "surprise", "sad": "sad"}  # fmt: skip
    pattern = r"(?i)(?P<speaker>OAF|YAF|OA)_(?P<text>[a-z]+)_(?P<label>angry|disgust|fear|happy|neutral|ps|sad)"
    citation = "Pichora-Fuller & Dupuis, Toronto emotional speech set (TESS), University of Toronto, 2020"
    notes = (
        "Two female speakers, OAF (older) and YAF (younger); stem speaker_word_emotion, with or without "
        "per-emotion folders (their spellings vary and are ignored). ps = pleasant surprise -> surprise. "
        "The misspelled OA_bite_neutral is read as speaker OAF (key OAF_bite_neutral)."
    )

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        speaker = m["speaker"].upper()
        speaker = "OAF" if speaker == "OA" else speaker
        word, label = m["text"].lower(), m["label"].lower()
        return Utterance(
            label_native=label, speaker=speaker, gender="f", text_id=word, key=f"{speaker}_{word}_{label}"
        )


class SAVEE(CorpusReader):
    name = "savee"
    language, language_name = "en", "English (British)"
    labels = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
              "su": "surprise"}  # fmt: skip
    pattern = r"(?:(?P<speaker>DC|JE|JK|KL)_)?(?P<label>sa|su|[adfhn])(?P<text>\d\d)"
    citation = "Haq & Jackson, Speaker-dependent audio-visual emotion recognition, AVSP 2009"
    notes = (
        "Four male speakers DC, JE, JK, KL. Flat (JE_n23) or per-speaker folders (JE/n23); the key is "
        "always SPEAKER_emotionNN. text_id is emotion+number: SAVEE's sentence numbers restart per emotion."
    )
    _SPEAKERS = frozenset({"DC", "JE", "JK", "KL"})

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        speaker = m["speaker"] or path.parent.name.upper()
        if speaker not in self._SPEAKERS:
            return None
        code = f"{m['label']}{m['text']}"
        return Utterance(label_native=m["label"], speaker=speaker, gender="m", text_id=code, key=f"{speaker}_{code}")


class CREMAD(CorpusReader):
    name = "cremad"
    language, language_name = "en", "English (North American)"
    labels = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    pattern = (
        r"(?P<speaker>1\d{3})_(?P<text>DFA|IEO|IOM|ITH|ITS|IWL|IWW|MTI|TAI|TIE|TSI|WSI)"
        r"_(?P<label>ANG|DIS|FEA|HAP|NEU|SAD)_(?P<level>LO|MD|HI|XX)"
    )
    citation = (
        "Cao et al., CREMA-D: Crowd-sourced emotional multimodal actors dataset, IEEE Trans. Affective Computing 2014"
    )
    notes = (
        "Actors 1001-1091; gender from the corpus's VideoDemographics.csv (column Sex) when it lies in the "
        "audio folder or up to three folders above it, else empty. Level LO/MD/HI -> low/normal/high, "
        "XX (unspecified) -> empty."
    )
    _LEVELS = {"LO": "low", "MD": "normal", "HI": "high", "XX": None}
    _DEMOGRAPHICS = "VideoDemographics.csv"

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(
            label_native=m["label"],
            speaker=m["speaker"],
            gender=self._genders(path.parent).get(m["speaker"]),
            intensity=self._LEVELS[m["level"]],
            text_id=m["text"],
        )

    def _genders(self, folder: Path) -> dict[str, str]:
        """ActorID -> gender from the nearest VideoDemographics.csv, cached per audio folder."""
        cache: dict[Path, dict[str, str]] = self.__dict__.setdefault("_gender_cache", {})
        if folder not in cache:
            table: dict[str, str] = {}
            for up in [folder, *folder.parents][:4]:
                csv_path = up / self._DEMOGRAPHICS
                if csv_path.is_file():
                    table = self._read_demographics(csv_path)
                    break
            cache[folder] = table
        return cache[folder]

    @staticmethod
    def _read_demographics(csv_path: Path) -> dict[str, str]:
        table: dict[str, str] = {}
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as fh:
                for row in csv.DictReader(fh):
                    actor, gender = (row.get("ActorID") or "").strip(), _gender_word(row.get("Sex"))
                    if actor and gender:
                        table[actor] = gender
        except (OSError, UnicodeDecodeError, csv.Error):
            return {}
        return table


class ShEMO(CorpusReader):
    name = "shemo"
    language, language_name = "fa", "Persian"
    labels = {"A": "angry", "F": "fear", "H": "happy", "N": "neutral", "S": "sad", "W": "surprise"}
    pattern = r"(?P<speaker>(?P<gender>[FM])\d\d)(?P<label>[AFHNSW])(?P<index>\d\d)"
    citation = (
        "Mohamad Nezami, Jamshid Lou & Karami, ShEMO: a large-scale validated database for Persian speech "
        "emotion detection, Language Resources and Evaluation 2019"
    )
    notes = (
        "Stem gender letter + speaker number (the speaker id, e.g. M36), emotion letter, index. Speech comes "
        "from radio plays, so there are no shared sentences: text_id is empty."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(label_native=m["label"], speaker=m["speaker"], gender=m["gender"].lower())


class CaFE(CorpusReader):
    name = "cafe"
    language, language_name = "fr", "French (Canadian)"
    labels = {"C": "angry", "D": "disgust", "J": "happy", "N": "neutral", "P": "fear", "S": "surprise", "T": "sad"}
    pattern = r"(?P<speaker>\d\d)-(?P<label>[CDJNPST])-(?P<level>[12])-(?P<text>\d)"
    citation = "Gournay, Lahaie & Lefebvre, A Canadian French emotional speech dataset, ACM MMSys 2018"
    notes = (
        "Stem speaker-emotion-intensity-sentence; 12 actors, odd numbers male. Intensity 1 (Faible, weak) "
        "-> low, 2 (Fort, strong) -> high; neutral has no intensity (its stems carry 1) -> empty. The "
        "emotion folders' names (often mis-encoded) are ignored."
    )
    _LEVELS = {"1": "low", "2": "high"}

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        speaker = m["speaker"]
        return Utterance(
            label_native=m["label"],
            speaker=speaker,
            gender="m" if int(speaker) % 2 else "f",
            intensity=None if m["label"] == "N" else self._LEVELS[m["level"]],
            text_id=m["text"],
        )


class AESDD(CorpusReader):
    name = "aesdd"
    language, language_name = "el", "Greek"
    labels = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "s": "sad"}
    pattern = r"(?P<label>[adfhs])(?P<text>\d\d) ?\((?P<speaker>\d+)\)(?P<take>[a-z]?)"
    citation = "Vryzas et al., Speech emotion recognition for performance interaction, J. Audio Eng. Soc. 2018"
    notes = (
        "Stem emotion letter + utterance number, actor number in parentheses, optional take letter "
        "(a03 (3)b). No neutral class; the corpus does not give the actors' genders in the file names."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(label_native=m["label"], speaker=m["speaker"], text_id=m["text"])


class SUBESCO(CorpusReader):
    name = "subesco"
    language, language_name = "bn", "Bengali"
    labels = {"ANGRY": "angry", "DISGUST": "disgust", "FEAR": "fear", "HAPPY": "happy", "NEUTRAL": "neutral",
              "SAD": "sad", "SURPRISE": "surprise"}  # fmt: skip
    pattern = (
        r"(?P<gender>[FM])_(?P<number>\d\d)_(?P<name>[A-Za-z]+)_S_(?P<text>\d+)"
        r"_(?P<label>ANGRY|DISGUST|FEAR|HAPPY|NEUTRAL|SAD|SURPRISE)_(?P<take>\d+)\]?"
    )
    citation = "Sultana et al., SUST Bangla Emotional Speech Corpus (SUBESCO), PLoS ONE 2021"
    notes = (
        "Stem gender_number_NAME_S_sentence_EMOTION_take; speaker = gender_number (F_10). One file in the "
        "distribution ends in a stray ']' (F_02_MONIKA_S_2_SURPRISE_3]); it is read, its key without the ']'."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(
            label_native=m["label"],
            speaker=f"{m['gender']}_{m['number']}",
            gender=m["gender"].lower(),
            text_id=m["text"],
            key=path.stem.rstrip("]"),
        )


class MESD(CorpusReader):
    name = "mesd"
    language, language_name = "es", "Spanish (Mexican)"
    labels = {"Anger": "angry", "Disgust": "disgust", "Fear": "fear", "Happiness": "happy", "Neutral": "neutral",
              "Sadness": "sad"}  # fmt: skip
    pattern = (
        r"(?P<label>Anger|Disgust|Fear|Happiness|Neutral|Sadness)_(?P<voice>[FMC])_(?P<set>[AB])"
        r"_(?P<word>[^\W\d_]+(?:_[^\W\d_]+)*)"
    )
    citation = "Duville, Alonso-Valerdi & Ibarra-Zarate, Mexican Emotional Speech Database (MESD), Mendeley Data 2021"
    notes = (
        "Stem emotion_voice_corpus_word; voice F adult female, M adult male, C child (gender empty). The "
        "corpus documents no speaker ids, so speaker is empty and speaker-independent splits are impossible; "
        "text_id is the word (words may contain '_': de_nada)."
    )

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        gender = {"F": "f", "M": "m"}.get(m["voice"])
        return Utterance(label_native=m["label"], speaker=None, gender=gender, text_id=m["word"].lower())


class ASED(CorpusReader):
    name = "ased"
    language, language_name = "am", "Amharic"
    labels = {"a": "angry", "f": "fear", "h": "happy", "n": "neutral", "s": "sad"}
    pattern = (
        r"(?P<label>[afhnsAFHNS])(?P<folder>[1-5])-(?P<text>\d\d)-(?P<repetition>\d\d)"
        r"-(?P<gender>0[12])-(?P<speaker>\d\d)"
    )
    citation = "Retta et al., A new Amharic speech emotion dataset and classification benchmark, ACM TALLIP 2023"
    notes = (
        "Stem emotion letter + folder number, sentence, repetition, gender (01 female, 02 male), speaker. "
        "The speaker id is the speaker number alone: the numbers 01-65 are unique across genders (65 "
        "speakers), and 5 files carry a gender code that disagrees with the rest of their speaker's files "
        "(gender is read from the stem as written). One file spells the emotion letter in capitals (S4-...); "
        "codes are lower-cased."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(
            label_native=m["label"].lower(),
            speaker=m["speaker"],
            gender="f" if m["gender"] == "01" else "m",
            text_id=m["text"],
        )


class TurEVDB(CorpusReader):
    name = "turevdb"
    language, language_name = "tr", "Turkish"
    labels = {"hl": "sad", "kz": "angry", "mt": "happy", "sk": "calm"}
    pattern = r"(?P<speaker>\d{4})_(?P<label>hl|kz|mt|sk)_(?P<word>[^\W\d_]+)(?P<take>\d*)"
    citation = (
        "Canpolat, Ormanoğlu & Zeyrek, Turkish Emotion Voice Database (TurEV-DB), SLTU-CCURL workshop, LREC 2020"
    )
    notes = (
        "Stem speaker-id_emotion_word; emotion abbreviations kz (kızgın) angry, hl (hüzünlü) sad, mt (mutlu) "
        "happy, sk (sakin) calm (the folders Angry/Sad/Happy/Calm agree). Single words: text_id is the word "
        "without a trailing take number (ogul1 -> ogul). Gender is not in the file names."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(label_native=m["label"], speaker=m["speaker"], text_id=m["word"].lower())


class JLCorpus(CorpusReader):
    name = "jlcorpus"
    language, language_name = "en", "English (New Zealand)"
    labels = {"angry": "angry", "sad": "sad", "neutral": "neutral", "happy": "happy", "excited": "excited",
              "anxious": "anxious", "apologetic": "apologetic", "assertive": "assertive", "concerned": "concerned",
              "encouraging": "encouraging"}  # fmt: skip
    pattern = (
        r"(?P<speaker>(?P<gender>female|male)[12])_(?P<label>angry|sad|neutral|happy|excited|anxious|apologetic"
        r"|assertive|concerned|encouraging)_(?P<text>\d+[a-z])_(?P<take>\d+)"
    )
    citation = (
        "James, Tian & Watson, An open source emotional speech corpus for human robot interaction applications, "
        "Interspeech 2018"
    )
    notes = (
        "Speakers female1, female2, male1, male2. Primary emotions angry, sad, neutral, happy, excited and "
        "secondary anxious, apologetic, assertive, concerned, encouraging, each kept as its own label "
        "(excited is not merged into happy)."
    )

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        return Utterance(label_native=m["label"], speaker=m["speaker"], gender=m["gender"][0], text_id=m["text"])


class Oreau(CorpusReader):
    name = "oreau"
    language, language_name = "fr", "French"
    labels = {"C": "angry", "D": "disgust", "J": "happy", "N": "neutral", "P": "fear", "S": "surprise", "T": "sad"}
    pattern = r"(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<label>[CDJNPST])(?P<version>[a-z])"
    folder_hint = "or(?:e\u0301?|\u00e9)au"  # Oreau, Oréau (composed) and Oréau (e + combining accent)
    citation = "Kerkeni et al., French emotional speech database - Oréau, Zenodo 2020"
    notes = (
        "EmoDB-like stems (speaker, text code, emotion letter C colère, D dégoût, J joie, N neutre, P peur, "
        "S surprise, T tristesse, version). Because EmoDB's stems look the same (and share T and N), a file "
        "is read only below a folder named Oreau/Oréau or inside a sess<letter> folder; where both readers "
        "match, the Oreau folder decides, else EmoDB wins. Gender from the f/ or m/ folder when present."
    )
    _SESSION = re.compile(r"sess[a-z]", re.IGNORECASE)

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None or not (self.hinted(path) or self._SESSION.fullmatch(path.parent.name)):
            return None
        folders = {path.parent.name.lower(), path.parent.parent.name.lower()}
        gender = "f" if "f" in folders else "m" if "m" in folders else None
        return Utterance(label_native=m["label"], speaker=m["speaker"], gender=gender, text_id=m["text"])


class IEMOCAP(CorpusReader):
    name = "iemocap"
    language, language_name = "en", "English (North American)"
    labels = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad", "fru": "",
              "sur": "", "fea": "", "dis": "", "oth": "", "xxx": ""}  # fmt: skip
    pattern = (
        r"(?P<dialog>(?P<session>Ses0[1-5])[FM]_(?:impro\d\d[a-z]?|script\d\d_\d[a-z]?))"
        r"_(?P<gender>[FM])(?P<turn>\d{3})"
    )
    citation = "Busso et al., IEMOCAP: Interactive emotional dyadic motion capture database, LRE 2008"
    notes = (
        "Speaker = session + the turn's gender letter (Ses01F_impro04_M003 -> Ses01M). Labels and 1-5 "
        "valence/activation/dominance ratings from Session*/dialog/EmoEvaluation/<dialog>.txt, ratings mapped "
        "onto 0..1 by (r - 1) / 4. Standard 4 classes: neu, hap + exc (merged into happy), ang, sad; fru, sur, "
        "fea, dis, oth, xxx are kept with an empty label. A turn without an evaluation file (or not listed in "
        "it) is kept with empty label_native and no ratings."
    )
    _SESSION_DIR = re.compile(r"Session[1-5]", re.IGNORECASE)
    _LINE = re.compile(
        r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(?P<turn>\S+)\s+(?P<label>\S+)\s+"
        r"\[\s*(?P<v>[\d.]+)\s*,\s*(?P<a>[\d.]+)\s*,\s*(?P<d>[\d.]+)\s*\]"
    )

    def ignores(self, path: Path) -> bool:
        # whole-dialog recordings (Session*/dialog/wav) and other non-turn audio
        return "dialog" in path.parts or "sentences" not in path.parts

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        speaker = f"{m['session']}{m['gender']}"
        found = self._evaluation(path, m["dialog"]).get(path.stem)
        if found is None:
            return Utterance(label_native="", speaker=speaker, gender=m["gender"].lower())
        label, valence, arousal, dominance = found
        return Utterance(
            label_native=label,
            speaker=speaker,
            gender=m["gender"].lower(),
            valence=valence,
            arousal=arousal,
            dominance=dominance,
        )

    def _evaluation(self, path: Path, dialog: str) -> dict[str, tuple[str, float, float, float]]:
        """The parsed EmoEvaluation file of ``dialog`` (turn -> label, V, A, D), cached per file."""
        files: dict[tuple[Path, str], Path | None] = self.__dict__.setdefault("_eval_paths", {})
        parsed: dict[Path, dict[str, tuple[str, float, float, float]]] = self.__dict__.setdefault("_eval_files", {})
        where = (path.parent, dialog)
        if where not in files:
            files[where] = self._find_evaluation(path, dialog)
        found = files[where]
        if found is None:
            return {}
        if found not in parsed:
            parsed[found] = self._read_evaluation(found)
        return parsed[found]

    def _find_evaluation(self, path: Path, dialog: str) -> Path | None:
        session = f"Session{int(dialog[3:5])}"
        for up in [path.parent, *path.parent.parents][:6]:
            bases = [up] if self._SESSION_DIR.fullmatch(up.name) else [up / session, up]
            for base in bases:
                candidate = base / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
                if candidate.is_file():
                    return candidate
        return None

    def _read_evaluation(self, txt: Path) -> dict[str, tuple[str, float, float, float]]:
        out: dict[str, tuple[str, float, float, float]] = {}
        try:
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            m = self._LINE.match(line)
            if m:
                v, a, d = (float(rating_to_unit(float(m[k]))) for k in ("v", "a", "d"))
                out[m["turn"]] = (m["label"], v, a, d)
        return out


class NEMO(CorpusReader):
    name = "nemo"
    language, language_name = "pl", "Polish"
    labels = {"anger": "angry", "fear": "fear", "happiness": "happy", "neutral": "neutral", "sadness": "sad",
              "surprised": "surprise"}  # fmt: skip
    pattern = (
        r"(?P<speaker>[A-Z]{2,3}\d{1,2})_(?P<label>anger|fear|happiness|neutral|sadness|surprised)_(?P<take>\d+)"
    )
    citation = "Christop, nEMO: Dataset of Emotional Speech in Polish, LREC-COLING 2024"
    notes = (
        "samples/<SPEAKER>_<emotion>_<n>; speaker and emotion always from the stem, so copies with and "
        "without data.tsv agree. When data.tsv lies beside the samples folder (or in it), its row for the "
        "file adds gender and text_id = the first 10 hex digits of the SHA-1 of normalized_text (the same "
        "sentence has the same id across speakers); without data.tsv gender and text_id are empty."
    )
    _TABLE = "data.tsv"

    def parse(self, path: Path) -> Utterance | None:
        m = self.match(path)
        if m is None:
            return None
        row = self._table(path.parent).get(path.stem, {})
        text = (row.get("normalized_text") or "").strip()
        return Utterance(
            label_native=m["label"],
            speaker=m["speaker"],
            gender=_gender_word(row.get("gender")),
            text_id=hashlib.sha1(text.encode("utf-8")).hexdigest()[:10] if text else None,
        )

    def _table(self, folder: Path) -> dict[str, dict[str, str]]:
        """file stem -> data.tsv row, from the data.tsv nearest the samples folder; cached per folder."""
        cache: dict[Path, dict[str, dict[str, str]]] = self.__dict__.setdefault("_table_cache", {})
        if folder not in cache:
            table: dict[str, dict[str, str]] = {}
            for up in (folder, folder.parent):
                tsv = up / self._TABLE
                if tsv.is_file():
                    table = self._read_table(tsv)
                    break
            cache[folder] = table
        return cache[folder]

    @staticmethod
    def _read_table(tsv: Path) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        try:
            with open(tsv, newline="", encoding="utf-8-sig") as fh:
                for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                    file_id = (row.get("file_id") or "").strip()
                    if file_id:  # "EB0_anger_1", possibly with a folder or an audio extension
                        out[Path(file_id).stem if is_audio_path(file_id) else Path(file_id).name] = row
        except (OSError, UnicodeDecodeError, csv.Error):
            return {}
        return out
