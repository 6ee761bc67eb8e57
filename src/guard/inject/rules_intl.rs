//! The injection rules in languages other than English: an imperative verb and a target
//! (instructions, rules, restrictions, the system prompt) within a short span, role-play framings
//! that announce no restrictions, and prompt-leak requests. Same conventions as `rules`; the
//! trigger literals for the prefilter are in `TRIGGERS` (lowercase: the normaliser lowercases
//! before the rules run, and the prefilter lowercases non-ASCII capitals before looking).
//!
//! Languages: German, French, Spanish, Italian, Portuguese, Dutch, Polish, Russian, Chinese,
//! Japanese, Turkish, Norwegian/Swedish (override only).

use super::rule::{r, s, Rule};
use super::Family;

/// Every rule of this file.
pub(super) fn rules() -> Vec<Rule> {
    use Family::*;
    vec![
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergeh\w*|verwirf)\b[^.\n]{0,40}\b(?:anweisung\w*|instruktion\w*|regeln|vorgaben|befehle|richtlinien|systemprompt\w*)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignore|ignorez|oublie|oubliez)\s+(?:toutes?\s+|tout\s+)?(?:les|tes|vos|ces)\s+(?:\w+\s+){0,2}?(?:instructions|consignes|règles|directives)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignora|ignore|ignoren|olvida|olvide|olviden|omite|descarta|haz caso omiso de)\s+(?:todas?\s+|todos\s+)?(?:las|los|tus|sus)\s+(?:\w+\s+){0,2}?(?:instrucciones|reglas|normas|indicaciones|órdenes|directrices)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignora|ignorate|dimentica|dimenticate|trascura)\s+(?:tutte\s+)?(?:le|tue)\s+(?:\w+\s+){0,2}?(?:istruzioni|regole|direttive|indicazioni)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignore|ignora|esqueça|esqueca|desconsidere|descarte)\s+(?:todas?\s+|todos\s+)?(?:as|os|suas|tuas)\s+(?:\w+\s+){0,2}?(?:instruções|instrucoes|regras|diretrizes|ordens)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:negeer|vergeet)\s+(?:alle\s+)?(?:de\s+|je\s+|uw\s+)?(?:\w+\s+){0,2}?(?:instructies|regels|aanwijzingen|opdrachten)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(r"\b(?:zignoruj|ignoruj|zapomnij)\b[^.\n]{0,30}(?:instrukcj|polece|zasad)"),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте|не обращай внимания на)[^.\n]{0,40}(?:инструкци|правил|указани|промпт)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(r"(?:talimat|kural)\w*[^.\n]{0,20}(?:yok say(?:ın)?|görmezden gel(?:in)?|unut(?:un)?)\b"),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:^|[^我])(?:忽略|无视|忘记|忘掉|忽視|無視)(?:[^了。\n][^。\n]{0,11})?(?:指令|指示|提示|规则|規則|说明)|(?:指示|命令|ルール|プロンプト)[^。\n]{0,10}(?:無視(?:して|しろ|しなさい|する)|忘れ(?:て|ろ|なさい))",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignorer|ignorera|glem|glöm)\s+(?:alle\s+|alla\s+)?(?:\w+\s+){0,2}?(?:instruksjoner|instruktioner|instruktionerna|regler|reglerna)",
            ),
        ),
        r(
            PromptLeak,
            0.8,
            s(
                r"\b(?:wiederhole|zeige|zeig|gib|nenne|répète|repete|affiche|montre|donne|muestra|repite|dime|mostra|ripeti|dimmi|mostre|repita|покажи|выведи|повтори)\b[^.\n]{0,40}(?:systemprompt|system-prompt|prompt\s+(?:del|di|du|do)\s+(?:sistema|système)|instructions\s+initiales|instrucciones\s+iniciales|istruzioni\s+iniziali|системн\w*\s+(?:промпт|инструкци)|anfangsanweisungen)",
            ),
        ),
        // --- broader verb and target vocabularies ---
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignorier\w*|vergiss|vergesst|vergessen sie|missachte\w*|übergeh\w*|überspring\w*|verwirf|verwerfe\w*)\b[^.\n]{0,40}\b(?:einschränkung\w*|beschränkung\w*|vorschrift\w*|programmierung|anordnung\w*|gesagt|beigebracht|aufgetragen|vorgegeben)",
            ),
        ),
        r(
            InstructionOverride,
            0.7,
            s(
                r"\b(?:befolge|befolgt|beachte|beachtet)\b[^.\n]{0,40}\b(?:anweisung\w*|regeln|vorgaben|richtlinien|einschränkung\w*)\b[^.\n]{0,20}\bnicht\b",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignore[sz]?|ignorer|oublie[sz]?|oublier|néglige[sz]?|contourne[sz]?|ne (?:tiens|tenez|tenir) (?:pas|plus) compte|fais abstraction|faites abstraction|ne (?:suis|suivez|respecte|respectez) (?:pas|plus))\b[^.\n]{0,40}\b(?:instructions|consignes|règles|directives|restrictions|limites|contraintes|programmation|ce qu'on t'a dit|ce que l'on t'a dit)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignora\w*|ignore[ns]?|olvida\w*|olvide\w*|omite|omitan|descarta\w*|haz caso omiso|hagan caso omiso|no (?:sigas|siga|obedezcas|hagas caso)|pasa por alto)\b[^.\n]{0,40}\b(?:instrucciones|reglas|normas|indicaciones|órdenes|directrices|restricciones|lo que te (?:dijeron|han dicho|indicaron))",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignora(?:te|re)?|dimentica(?:te|re)?|trascura(?:te|re)?|tralascia(?:te|re)?|non (?:seguire|rispettare|considerare)|lascia perdere)\b[^.\n]{0,40}\b(?:istruzioni|regole|direttive|indicazioni|vincoli|restrizioni|limitazioni)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:ignor[ea]\w*|esqueça\w*|esqueca\w*|desconsidere\w*|descarte\w*|não (?:siga|obedeça|obedeca)|nao (?:siga|obedeça|obedeca)|deixe de lado)\b[^.\n]{0,40}\b(?:instruções|instrucoes|regras|diretrizes|ordens|restrições|restricoes|orientações|orientacoes)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:negeer\w*|vergeet|omzeil\w*)\b[^.\n]{0,40}\b(?:instructies|regels|aanwijzingen|opdrachten|richtlijnen|beperkingen)",
            ),
        ),
        r(
            InstructionOverride,
            0.7,
            s(r"\bvolg\b[^.\n]{0,40}\b(?:instructies|regels|richtlijnen)\b[^.\n]{0,15}\bniet\b"),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"\b(?:zignoruj\w*|ignoruj\w*|zapomnij\w*|pomiń|pomin|nie (?:stosuj|przestrzegaj|słuchaj|sluchaj))\b[^.\n]{0,40}(?:instrukcj|polece|zasad|reguł|regul|ogranicze|wytyczn)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:игнорир\w*|проигнорир\w*|забудь\w*|не обращай внимания|не следуй|отбрось|пропусти|отмени|не слушай)[^.\n]{0,40}(?:инструкци|правил|указани|промпт|ограничени|директив|команд|тебе говорили|тебе сказали)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:^|[^我])(?:忽略|无视|忘记|忘掉|忽視|無視|忘記|不要遵守|不要遵循|不要理会|不用管|别管|跳过|抛开|拋開|放弃|放棄)(?:[^了。\n][^。\n]{0,11})?(?:指令|指示|提示|规则|規則|说明|說明|限制|设定|設定|要求|约束|約束|规定|規定)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:指示|命令|ルール|規則|制限|制約|設定|プロンプト)[^。\n]{0,10}(?:無視(?:して|しろ|しなさい|する)|忘れ(?:て|ろ|なさい)|従わな(?:いで|くてい)|従う必要はありません|破棄して|取り消して)",
            ),
        ),
        r(
            InstructionOverride,
            0.85,
            s(
                r"(?:talimat|kural|yönerge|komut|kısıtlama|sınırlama|direktif)\w*[^.\n]{0,30}(?:yok say(?:ın)?|görmezden gel(?:in)?|unut(?:un)?|dikkate alma(?:yın)?|boşver(?:in)?|uyma(?:yın)?|atla(?:yın)?)\b",
            ),
        ),
        // --- role-play with no restrictions ---
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:du bist|tu so|stell dir vor|ab jetzt)\b[^.\n]{0,50}\b(?:keine\w*|ohne)\s+(?:\w+\s+)?(?:einschränkung\w*|regeln|filter|beschränkung\w*|grenzen|zensur|richtlinien)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:fais comme si|faites comme si|imagine que|désormais|à partir de maintenant|dorénavant)\b[^.\n]{0,50}\b(?:aucune?s?|sans|pas de)\s+(?:\w+\s+)?(?:restrictions?|règles?|limites?|filtres?|censure|contraintes?)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:finge|finja|imagina|actúa como|actua como|a partir de ahora|desde ahora)\b[^.\n]{0,50}\b(?:sin|no tienes|ningún|ninguna?s?)\s+(?:\w+\s+)?(?:restricciones|reglas|límites|limites|filtros|censura|normas)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:fingi|immagina|comportati come|d'ora in poi|da ora in poi|da adesso)\b[^.\n]{0,50}\b(?:senza|nessuna?|non hai)\s+(?:\w+\s+)?(?:restrizioni|regole|limiti|filtri|censura|vincoli)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:finja|imagine|aja como|a partir de agora|de agora em diante)\b[^.\n]{0,50}\b(?:sem|não tem|nao tem|nenhuma?)\s+(?:\w+\s+)?(?:restrições|restricoes|regras|limites|filtros|censura)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:doe alsof|stel je voor|vanaf nu)\b[^.\n]{0,50}\b(?:geen|zonder)\s+(?:\w+\s+)?(?:regels|beperkingen|filters|grenzen|censuur)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:udawaj|wyobraź sobie|od teraz)\b[^.\n]{0,50}\b(?:bez|nie masz)\s+(?:\w+\s+)?(?:ogranicze\w*|zasad|reguł|filtrów|cenzury)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"(?:притворись|представь|с этого момента|отныне|ты теперь)[^.\n]{0,50}(?:без|нет)\s+(?:\w+\s+)?(?:ограничени|правил|фильтр|цензур)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"(?:假装|假裝|扮演|想象|想像|从现在开始|從現在開始|现在你是|現在你是)[^。\n]{0,30}(?:没有|沒有|不受|无|無)(?:任何)?[^。\n]{0,4}(?:限制|规则|規則|约束|約束|审查|審查|过滤|過濾)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"(?:制限|制約|ルール|規則|フィルター)(?:が|の)?(?:一切)?(?:ない|無い|なし|無し)[^。\n]{0,6}(?:ai|アシスタント|モデル|として|ふり)",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"(?:gibi davran|rol yap|farz et|bundan sonra)[^.\n]{0,50}(?:kısıtlama|kural|sınır|filtre|sansür)\w*\s+(?:olmadan|yok|olmayan|yokmuş)",
            ),
        ),
        // --- prompt leak ---
        r(
            PromptLeak,
            0.8,
            s(
                r"\b(?:zeig\w*|gib|nenne|verrat\w*|wiederhol\w*|schreib\w*)\b[^.\n]{0,40}\bdein\w*\s+(?:\w+\s+)?(?:\w*anweisungen|instruktionen|vorgaben|systemprompt\w*)",
            ),
        ),
        r(
            PromptLeak,
            0.8,
            s(
                r"\b(?:révèle|revele|affiche|montre|donne|répète|repete|dis)\b[^.\n]{0,40}\b(?:tes|vos|ton|votre)\s+(?:\w+\s+)?(?:instructions|consignes|prompt|directives)",
            ),
        ),
        r(
            PromptLeak,
            0.8,
            s(
                r"(?:输出|輸出|显示|顯示|告诉我|告訴我|重复|重複|打印|透露|泄露|洩露)[^。\n]{0,12}(?:系统提示|系統提示|提示词|提示詞|系统指令|系統指令|初始指令|系统消息|系統訊息)",
            ),
        ),
        r(
            PromptLeak,
            0.8,
            s(r"(?:システムプロンプト|初期指示|システム指示|最初の指示)[^。\n]{0,15}(?:表示|教え|出力|見せ|繰り返)"),
        ),
        r(
            PromptLeak,
            0.8,
            s(r"\bsistem\s+(?:istem|talimat|mesaj)\w*[^.\n]{0,20}(?:göster|yaz|söyle|paylaş|tekrarla)"),
        ),
    ]
}

/// The trigger literals of this file's rules (lowercase), one part per rule as in
/// `rules::TRIGGERS`.
pub(super) const TRIGGERS: &[&str] = &[
    // German.
    "ignorier",
    "vergiss",
    "vergesst",
    "vergessen sie",
    "missacht",
    "übergeh",
    "überspring",
    "verwirf",
    "verwerfe",
    "befolg",
    "beachte",
    "du bist",
    "tu so",
    "stell dir vor",
    "ab jetzt",
    "anweisung",
    "instruktion",
    "vorgaben",
    "glem",
    "glöm",
    // French, Spanish, Italian, Portuguese (the Romance stems are shared).
    "ignor",
    "oubli",
    "néglige",
    "contourne",
    "compte",
    "abstraction",
    "ne suis",
    "ne suivez",
    "ne respecte",
    "comme si",
    "imagin",
    "immagin",
    "désormais",
    "à partir de maintenant",
    "dorénavant",
    "consigne",
    "olvid",
    "omite",
    "omitan",
    "descart",
    "caso omiso",
    "no siga",
    "no obedezcas",
    "no hagas caso",
    "pasa por alto",
    "fing",
    "actúa como",
    "actua como",
    "a partir de ahora",
    "desde ahora",
    "dimentic",
    "trascur",
    "tralasc",
    "non seguire",
    "non rispettare",
    "non considerare",
    "lascia perdere",
    "comportati come",
    "d'ora in poi",
    "da ora in poi",
    "da adesso",
    "esqueç",
    "esquec",
    "desconsider",
    "não siga",
    "não obede",
    "nao siga",
    "nao obede",
    "deixe de lado",
    "finja",
    "aja como",
    "a partir de agora",
    "de agora em diante",
    "instruc",
    "instruç",
    "istruzion",
    "prompt",
    // Dutch, Polish.
    "negeer",
    "vergeet",
    "omzeil",
    "^volg$",
    "doe alsof",
    "stel je voor",
    "vanaf nu",
    "ignoruj",
    "zapomnij",
    "pomiń",
    "pomin",
    "nie stosuj",
    "nie przestrzegaj",
    "nie słuchaj",
    "nie sluchaj",
    "udawaj",
    "wyobraź sobie",
    "od teraz",
    // Russian.
    "игнорир",
    "забудь",
    "не обращай",
    "не следуй",
    "отбрось",
    "пропусти",
    "отмени",
    "не слушай",
    "притворись",
    "представь",
    "с этого момента",
    "отныне",
    "ты теперь",
    "системн",
    // Chinese.
    "忽略",
    "无视",
    "忘记",
    "忘掉",
    "忽視",
    "無視",
    "忘記",
    "不要遵守",
    "不要遵循",
    "不要理会",
    "不用管",
    "别管",
    "跳过",
    "抛开",
    "拋開",
    "放弃",
    "放棄",
    "假装",
    "假裝",
    "扮演",
    "想象",
    "想像",
    "从现在开始",
    "從現在開始",
    "现在你是",
    "現在你是",
    "系统提示",
    "系統提示",
    "提示词",
    "提示詞",
    "系统指令",
    "系統指令",
    "初始指令",
    "系统消息",
    "系統訊息",
    // Japanese.
    "忘れ",
    "従わな",
    "従う必要",
    "破棄",
    "取り消",
    "制限",
    "制約",
    "ルール",
    "規則",
    "フィルター",
    "システムプロンプト",
    "初期指示",
    "システム指示",
    "最初の指示",
    // Turkish.
    "talimat",
    "kural",
    "yönerge",
    "komut",
    "kısıtlama",
    "sınırlama",
    "direktif",
    "gibi davran",
    "rol yap",
    "farz et",
    "bundan sonra",
    "sistem",
];
