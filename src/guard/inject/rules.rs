//! The rule table of the injection scorer: one regex per signal, run as one `RegexSet` over the
//! normalised text (lowercase, folded; see `normalize`), each with a family and a weight per
//! source.
//!
//! Rules pair an imperative verb with a target (instructions, rules, prompt, …) rather than
//! matching single words, so "ignore the previous row" or "print the system time" stay quiet.
//! Weights are probabilities that the text is an attack given the signal alone; the scorer
//! combines them with a noisy-OR, so two weak signals (0.45 each) make a flag (0.70) and one
//! does not.
//!
//! Tool weights (`Source::Tool`): by default a rule's tool weight is its user weight plus
//! `TOOL_LIFT` (0.10, capped at 1.0): instructions have no business inside data a tool
//! returned. Rules that address the assistant by name ("assistant, …", "note to the AI", "if you
//! are an AI", "the assistant must …", "ignore the user") carry their own pair: weak in a user
//! turn (0.35–0.5, people talk about assistants) and strong in a tool result (0.75–0.85, the
//! indirect-injection signature).

use super::rule::{r, rt, s, Rule};
use super::Family;

// Verbs that throw instructions away.
const OV: &str = r"(?:ignor(?:e|es|ed|ing)|ignorer|disregard\w*|forg[eo]t\w*|overrid\w*|overrode|overwrit\w*|discard\w*|skip\w*|bypass\w*|abandon\w*|cancel\w*|eras(?:e|es|ed|ing)|set(?:ting)? aside|put(?:ting)? aside|pay(?:ing)? no (?:attention|heed|mind) to|(?:do not|don't|dont|stop|never|no longer|cease to) (?:follow\w*|obey\w*|adher\w* to|compl\w* with|abid\w* by|heed\w*|respect\w*|listen\w* to)|neglect\w*|circumvent\w*|throw away|throw out|get rid of|overlook\w*|dismiss\w*|scrap\w*|ditch\w*|unlearn\w*|disobey\w*|look past|move past|let go of|leave behind)";
// Words allowed between the verb and the target.
const W: &str = r"(?:all|of|the|your|any|these|those|every|my|previous|prior|above|earlier|preceding|original|initial|old|system|safety|content|foregoing|above-mentioned|given|ai's|model's|assistant's|openai's|hidden|developer|current)";
// Words that point at the model's own instructions (one must appear).
const STRONG: &str = r"(?:all|your|any|previous|prior|above|earlier|preceding|original|initial|system|safety|foregoing|above-mentioned|ai's|model's|assistant's|openai's|hidden)";
// What gets thrown away.
const NOUN: &str = r"(?:instructions?|rules?|directions?|directives?|guidelines?|guidance|prompts?|commands?|constraints?|restrictions?|programming|polic(?:y|ies)|filters?|system message|context|training|limitations?|safeguards?|guardrails?|task|messages?|orders|protocols?|principles|ethics|ethical guidelines|morals|boundaries|conditioning|alignment)";
// The subset of `NOUN` that can only mean the model's own instructions (for weaker verbs).
const NOUN_MODEL: &str = r"(?:instructions|directives|guidelines|guidance|programming|training|rules|constraints|restrictions|system prompt|conditioning|principles|ethics|safeguards|guardrails)";
// Ways to say "the assistant".
const AI: &str = r"(?:ai|assistant|ai assistant|ai model|language model|llm|chatbot|claude|chatgpt|gpt|gemini|copilot|bot|agent|model)";
// The markers that are rarely anything but a chat template (`<system>` is also plain XML).
const MARK_BARE: &str = r"(?:<\|im_start\|>\s*system|<\|system\|>|<\|start_header_id\|>\s*system|<<sys>>|<<system>>|\[system\]|\[inst\]|#{2,}\s*system\s*#{2,}|#{2,}\s*(?:system|instructions?)\s*:|<\|endoftext\|>)";
// What follows a fake role marker when it is really an instruction.
const FOLLOW: &str = r"(?:you|your|all|the (?:assistant|user|ai|model)|new|ignore|disregard|forget|from now|reveal|print|output|comply|obey|answer|respond|disable|always|never|do not)";
// Verbs that ask for the model's instructions.
const LEAKV: &str = r"(?:repeat|print|output|reveal|show|display|tell|give|share|dump|list|echo|recite|write out|copy|paste|summari[sz]e|read|leak|spell out|type out|disclose|provide|what(?:'s| is| are| were| was)|what)";
// A role marker opening a fake turn.
const MARK: &str = r"(?:<\|im_start\|>\s*system|<\|system\|>|<\|start_header_id\|>\s*system\s*<\|end_header_id\|>|<<sys>>|<<system>>|\[system\]|\[inst\]|<system>|<sys>|#{2,}\s*system\s*#{2,}|#{2,}\s*(?:system|instructions?)\s*:|<\|endoftext\|>)";

/// Every rule, in no particular order.
pub(super) fn rules() -> Vec<Rule> {
    use Family::*;
    let mut v = vec![
        // --- instruction override ---
        r(
            InstructionOverride,
            0.9,
            format!(r"\b{OV}\s+(?:{W}\s+){{0,3}}{STRONG}\s+(?:{W}\s+){{0,3}}{NOUN}\b"),
        ),
        r(
            InstructionOverride,
            0.9,
            format!(r"\b{OV}\s+(?:{W}\s+){{0,3}}{STRONG}\s+{NOUN}\b"),
        ),
        r(
            InstructionOverride,
            0.4,
            format!(r"\b{OV}\s+(?:the\s+|these\s+|those\s+)?{NOUN}\b"),
        ),
        r(
            InstructionOverride,
            0.85,
            format!(
                r"\b{OV}\s+(?:everything|anything|all(?: of)?(?: that| this| the text)?|what(?:ever)?|the things?|the stuff)\s+(?:[\w']+\s+){{0,3}}?(?:above|before|previous(?:ly)?|prior|earlier|you(?:'ve| have| had)?\s+(?:been\s+|were\s+|was\s+)?(?:told|given|instructed|taught|trained|programmed|asked|ordered)|so far|until now|up to now|up to this point)"
            ),
        ),
        r(
            InstructionOverride,
            0.65,
            format!(
                r"\b{NOUN}\b[^.\n]{{0,30}}?\b(?:are|is|were|have been)\s+(?:now\s+|hereby\s+)?(?:void|invalid|cancell?ed|revoked|obsolete|overridden|replaced|null|lifted|suspended|no longer (?:valid|in effect|apply|applicable)|a test)\b"
            ),
        ),
        r(
            InstructionOverride,
            0.6,
            format!(r"\b{NOUN}\s+(?:above|before)\s+(?:do not|don't|no longer)\s+apply"),
        ),
        // "The rules no longer apply" is as often about tax law: weak unless something points at
        // the model's own rules (the rule above, or "your/previous … no longer apply" below).
        r(
            InstructionOverride,
            0.4,
            format!(r"\b{NOUN}\s+(?:do not|don't|no longer)\s+apply"),
        ),
        r(
            InstructionOverride,
            0.7,
            s(
                r"\b(?:new|updated|real|actual|true|revised|additional|secret|override|admin|developer)\s+(?:system\s+)?(?:instructions?|rules?|directives?|task|prompt|orders|goal|policy)\s*(?::|-|—|are\b|follow)",
            ),
        ),
        r(
            InstructionOverride,
            0.6,
            s(
                r"\b(?:instructions?|orders|directives?)\s+from\s+(?:the\s+|your\s+)?(?:developers?|admin\w*|system|openai|anthropic|creators?|operators?)\b",
            ),
        ),
        rt(
            InstructionOverride,
            0.6,
            0.85,
            s(
                r"\byour\s+(?:new|real|only|actual|true|next)\s+(?:task|goal|job|purpose|instructions?|role|objective|mission)\b|\bthe\s+real\s+task\s+is",
            ),
        ),
        r(
            InstructionOverride,
            0.45,
            format!(
                r"\b{NOUN}\s+(?:that\s+)?you(?:'ve| have)?\s+(?:were|been|was|received)\s*(?:given|told|provided|trained|programmed|earlier)?"
            ),
        ),
        r(
            InstructionOverride,
            0.7,
            s(
                r"\b(?:you\s+)?(?:no longer|don't|do not|never)\s+(?:have|need)\s+to\s+(?:follow|obey|comply with|adhere to|respect)",
            ),
        ),
        r(
            InstructionOverride,
            0.5,
            s(
                r"\b(?:now\s+)?(?:follow|obey|execute)\s+(?:these|the following|my|the new)\s+(?:new\s+)?(?:instructions|commands|orders|rules)",
            ),
        ),
        r(
            InstructionOverride,
            0.8,
            s(
                r"\b(?:disable|turn off|deactivate|remove|switch off|lift|drop)\s+(?:all\s+)?(?:your|the|its|any)\s+(?:\w+\s+)?(?:filters?|safety|guardrails?|restrictions|safeguards|content policy|censorship|moderation|limits|limitations)",
            ),
        ),
        r(
            InstructionOverride,
            0.5,
            s(
                r"\bi\s+am\s+your\s+(?:developer|creator|admin(?:istrator)?|owner|programmer|maker|operator)|\bas\s+your\s+(?:developer|creator|admin\w*|owner|programmer|operator)",
            ),
        ),
        r(InstructionOverride, 0.25, s(r"\bfrom now on\b")),
        // Other languages: see `rules_intl`.
        // --- role / system impersonation ---
        r(
            RoleImpersonation,
            0.85,
            s(
                r"\byou\s+are\s+(?:now\s+)?(?:(?:dan|stan|dude)\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|unchained|amoral)\b)",
            ),
        ),
        r(
            RoleImpersonation,
            0.8,
            s(
                r"\b(?:act|acting|behave|respond|pretend|roleplay|role-play|simulate|imagine|play)\s+(?:as|like|to be|you are|you're|that you are)?\s*(?:an?\s+|my\s+)?(?:\w+\s+){0,2}?(?:unrestricted|unfiltered|uncensored|jailbroken|unchained|unaligned|evil|amoral|unethical)\b",
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            format!(
                r"\b{AI}\s+(?:with\s+no|without(?:\s+any)?)\s+(?:\w+\s+)?(?:rules|restrictions|filters|guidelines|limits|content policy|ethical guidelines|ethics|censorship|morals)"
            ),
        ),
        r(
            RoleImpersonation,
            0.6,
            s(
                r"\b(?:that|who|which)\s+(?:has|have)\s+no\s+(?:rules|restrictions|filters|limits|guidelines|morals)|\byou\s+(?:have|has)\s+no\s+(?:\w+\s+)?(?:rules|restrictions|filters|limits|content policy|guidelines|limitations)",
            ),
        ),
        r(RoleImpersonation, 0.5, s(r"\bnever\s+refuses?\b|\bdo anything now\b")),
        r(
            RoleImpersonation,
            0.45,
            s(
                r"\b(?:without|with no)\s+(?:any\s+)?(?:restrictions|limits|filters|filtering|censorship|rules)\b|\bno limits\b",
            ),
        ),
        r(
            RoleImpersonation,
            0.7,
            s(r"\b(?:jailbreak|jailbroken|dan|unrestricted|uncensored|unfiltered|evil)\s+mode\b"),
        ),
        r(RoleImpersonation, 0.3, s(r"\bdeveloper\s+mode\b")),
        r(
            RoleImpersonation,
            0.65,
            s(
                r"\b(?:developer|god|dan|debug|sudo|admin)\s+mode\s+(?:enabled|activated|engaged)\b|\bin\s+developer\s+mode\s*,?\s+you\b",
            ),
        ),
        // Any mode is weak ("you are in presentation mode"); the jailbreak modes are not.
        r(
            RoleImpersonation,
            0.45,
            s(r"\byou\s+are\s+(?:now\s+)?in\s+(?:\w+\s+)?mode\b"),
        ),
        r(
            RoleImpersonation,
            0.7,
            s(
                r"\byou\s+are\s+(?:now\s+)?in\s+(?:developer|god|dan|debug|sudo|admin|root|jailbreak|jailbroken|unrestricted|uncensored|unfiltered|evil|chaos|maintenance|test|testing|override|superuser)\s+mode\b",
            ),
        ),
        r(
            RoleImpersonation,
            0.7,
            s(
                r"\b(?:safety|content|ethical)\s+(?:rules?\s+|filters?\s+|protocols?\s+|guidelines?\s+|polic(?:y|ies)\s+)?(?:is\s+|are\s+)?(?:now\s+)?(?:off|disabled|lifted|suspended|removed|deactivated)\b",
            ),
        ),
        r(RoleImpersonation, 0.6, s(r"\bsystem\s+override\b")),
        r(
            RoleImpersonation,
            0.7,
            s(
                r"\byou\s+are\s+no\s+longer\s+(?:chatgpt|claude|an? ai|an assistant|bound|restricted|limited|a language model)",
            ),
        ),
        r(RoleImpersonation, 0.45, s(MARK_BARE)),
        r(
            RoleImpersonation,
            0.8,
            format!(r"{MARK}\s*(?:system\s*:)?\s*(?:<<sys>>\s*)?{FOLLOW}\b"),
        ),
        r(
            RoleImpersonation,
            0.8,
            format!(r"(?m)^\s*(?:system|sys|system prompt|system message)\s*:\s*{FOLLOW}\b"),
        ),
        r(RoleImpersonation, 0.55, s(r#""role"\s*:\s*"system""#)),
        // --- delimiter tricks ---
        r(
            DelimiterTrick,
            0.45,
            s(
                r"</(?:user|human|input|document|context|data|text|content|query|message|instructions|email|article|prompt)>\s*(?:\S{0,20}\s*)?<(?:system|instructions?|new_instructions|admin|developer|sys)>",
            ),
        ),
        r(
            DelimiterTrick,
            0.35,
            s(
                r"\bend\s+of\s+(?:the\s+)?(?:user\s+)?(?:input|prompt|conversation|text|document|message|instructions|context|data)\b|\b(?:input|text|document|message|prompt|summarize)\s+ends\s+here\b|<<end>>|#{2,}\s*end\s*#{2,}",
            ),
        ),
        r(
            DelimiterTrick,
            0.8,
            s(
                r"(?s)(?:\bend\s+of\s+(?:the\s+)?(?:user\s+)?(?:input|prompt|conversation|text|document|message|context|data)\b|\bends\s+here\b|<<end>>|#{2,}\s*end\s*#{2,}).{0,80}?(?:\b(?:begin|start)(?:ning)?\s+(?:of\s+)?(?:new\s+)?(?:system\s+|admin\s+|developer\s+)?(?:instructions?|prompt|message)|\bsystem\s+(?:prompt|message|instructions?)|\bnew\s+(?:system\s+)?(?:prompt|instructions?)|\badmin\s+instructions|<<system>>|#{2,}\s*system|\bsystem\s*:)",
            ),
        ),
        r(
            DelimiterTrick,
            0.7,
            s(
                r"\bnew\s+system\s+(?:prompt|message|instructions?)\b|-{3,}\s*(?:begin\s+)?(?:new\s+)?system\s+(?:prompt|message)",
            ),
        ),
        // --- fake tool results and assistant turns ---
        r(
            FakeToolResult,
            0.6,
            s(r"(?m)^\s*(?:function|tool|action|api|plugin)\s+(?:result|output|response|call returned|returned)\s*:"),
        ),
        r(
            FakeToolResult,
            0.55,
            s(
                r"<(?:tool_result|tool_response|function_results?|function_call_output|tool_output|search_results|observation)>|\[tool_result\]",
            ),
        ),
        r(
            FakeToolResult,
            0.4,
            s(r"(?m)^\s*(?:assistant|ai|bot|chatgpt|claude|observation)\s*:"),
        ),
        r(
            FakeToolResult,
            0.7,
            s(
                r"(?m)(?:^\s*(?:assistant|ai|bot|chatgpt|claude)\s*:|<\|im_start\|>\s*assistant)\s*(?:sure|of course|understood|certainly|okay|ok|absolutely|i will|i'll|i have|here is|here's)\b",
            ),
        ),
        r(FakeToolResult, 0.5, s(r#""role"\s*:\s*"(?:tool|function)""#)),
        r(FakeToolResult, 0.4, s(r#""role"\s*:\s*"assistant""#)),
        r(
            FakeToolResult,
            0.6,
            s(
                r"\b(?:disabled|turned off|removed|bypassed|lifted)\s+(?:my|its|all|the)\s+(?:\w+\s+)?(?:filters|restrictions|safety|guidelines|safeguards|rules)",
            ),
        ),
        // --- tool results that address the assistant (indirect injection) ---
        rt(
            InstructionOverride,
            0.45,
            0.85,
            format!(
                r"(?:^|[\s,.;:!>(\[-]){AI}\s*[,:]\s*(?:please\s+)?(?:you\s+must|you\s+are\s+(?:instructed|required)|ignore|disregard|forget|do not|don't|stop|new task|send|forward|reply|respond|say|tell|include|delete|call|visit|open|output|print|reveal|append|rate|recommend|from now)"
            ),
        ),
        rt(
            InstructionOverride,
            0.4,
            0.8,
            format!(
                r"\b(?:note|message|instructions?|attention|important(?: instructions)?|notice)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{AI}s?\b|\battention,?\s+{AI}s?\b"
            ),
        ),
        rt(
            InstructionOverride,
            0.35,
            0.75,
            format!(
                r"\b(?:if you are|if you're|to any|to all|dear|hey|hello)\s+(?:an?\s+)?{AI}s?\b|\b(?:ai|llm)\s+(?:assistants?|agents?|models?)\s+(?:reading|processing|summari[sz]ing|parsing)\b"
            ),
        ),
        rt(
            InstructionOverride,
            0.35,
            0.8,
            format!(
                r"\b(?:the|this)\s+{AI}\s+(?:must|should|shall|is required to|needs to|is now authorized to|is instructed to|will now)\b"
            ),
        ),
        rt(
            InstructionOverride,
            0.5,
            0.85,
            s(r"\b(?:ignore|disregard|forget)\s+(?:the\s+)?user(?:'s)?\b"),
        ),
        rt(
            InstructionOverride,
            0.4,
            0.75,
            s(
                r"\b(?:do not|don't|never)\s+(?:tell|inform|mention (?:this|it) to)\s+the\s+user\b|\bdo not mention this\b|\bwithout telling (?:the user|me)\b",
            ),
        ),
        rt(
            InstructionOverride,
            0.5,
            0.75,
            s(
                r"\b(?:send|forward|email|post|upload|exfiltrate|transmit|leak)\s+(?:all\s+)?(?:of\s+)?(?:the\s+)?(?:user'?s?|their|all|the|this|your)\s+(?:\w+\s+){0,2}?(?:data|messages|emails?|history|conversation|password|credentials|api key|files?|secrets?|tokens?|session token|chat history)\b",
            ),
        ),
        rt(
            InstructionOverride,
            0.2,
            0.5,
            s(r"\b(?:visit|open|fetch|send|post|navigate to|go to|load|append)\b[^.\n]{0,40}https?://"),
        ),
        // --- encoding announcements (the decoded text is scored separately) ---
        r(
            EncodingTrick,
            0.45,
            s(
                r"\b(?:decode|decrypt|decipher|interpret|translate|run|execute|convert)\b[^.\n]{0,50}\b(?:and|then)\s+(?:follow|execute|obey|do|run|act on|perform|carry out)\b|\bdo what it says\b|\(execute it\)|\bexecute it\b|\bencoded command\b",
            ),
        ),
        r(
            EncodingTrick,
            0.4,
            s(r"\b(?:follow|execute|obey)\s+the\s+instructions\s+(?:in|inside|encoded|hidden)\b"),
        ),
        // --- prompt leak ---
        r(
            PromptLeak,
            0.8,
            format!(
                r"\b{LEAKV}\b[^.?\n]{{0,40}}?\b(?:your|the|its)\s+(?:[\w-]+\s+){{0,2}}?(?:system\s+(?:prompt|message|instructions?)|pre-?prompt|system-prompt|systemprompt)"
            ),
        ),
        r(
            PromptLeak,
            0.8,
            format!(
                r"\b{LEAKV}\b[^.?\n]{{0,40}}?\byour\s+(?:[\w-]+\s+){{0,2}}?(?:prompt|instructions|rules|configuration|directives|guidelines|initial prompt)\b"
            ),
        ),
        r(
            PromptLeak,
            0.75,
            format!(
                r"\b{LEAKV}\b[^.?\n]{{0,40}}?\bthe\s+(?:hidden|secret|confidential|internal)\s+(?:prompt|instructions|rules|message)\b"
            ),
        ),
        r(
            PromptLeak,
            0.8,
            format!(
                r"\b{LEAKV}\b[^.?\n]{{0,40}}?\b(?:rules|instructions|guidelines|prompt)\s+(?:that\s+)?you(?:'ve| have)?\s+(?:were|been)\s+(?:given|told|provided)"
            ),
        ),
        r(
            PromptLeak,
            0.75,
            s(
                r"\b(?:print|repeat|output|copy|show|echo|write|return|paste|reproduce)\s+(?:out\s+|back\s+)?(?:everything|all(?: the text)?|the (?:text|words|content|messages?)|all text)\s+(?:above|before|preceding|prior)\b",
            ),
        ),
        r(
            PromptLeak,
            0.75,
            s(r"\b(?:copy|print|repeat|dump|output|show|paste|echo)\b[^.?\n]{0,30}\byour\s+context(?:\s+window)?\b"),
        ),
        r(
            PromptLeak,
            0.7,
            s(r"\bleak\s+(?:the|your)\s+(?:\w+\s+)?(?:prompt|instructions|system)"),
        ),
        r(
            PromptLeak,
            0.7,
            s(
                r"\b(?:echo|repeat|print|show|output)\s+(?:back\s+)?(?:the\s+)?(?:very\s+)?(?:first|initial)\s+(?:message|prompt|instruction)",
            ),
        ),
        r(
            PromptLeak,
            0.75,
            s(
                r"\bwhat\s+did\s+(?:the|your)\s+(?:developers?|creators?|admin\w*|operators?|system)\s+(?:tell|say to|instruct|give)\s+you",
            ),
        ),
        r(
            PromptLeak,
            0.45,
            s(
                r"\b(?:print|show|dump|reveal|output|list)\s+(?:me\s+)?(?:all\s+)?(?:the\s+|your\s+)?(?:secrets?|passwords?|api keys?|credentials|session tokens?)\b",
            ),
        ),
        // --- generalisation: paraphrases without a listed verb/target pair ---
        r(
            InstructionOverride,
            0.6,
            format!(
                r"\b(?:drop|remove|delete|clear|reset|wipe|suspend|lift|shed|strip)\w*\s+(?:all\s+(?:of\s+)?)?your\s+(?:[\w-]+\s+){{0,2}}?{NOUN_MODEL}\b"
            ),
        ),
        r(
            InstructionOverride,
            0.8,
            s(
                r"\b(?:everything|anything|all|whatever|what)\s+(?:[\w']+\s+){0,2}?you(?:'ve| have| had)?\s+(?:been\s+|were\s+|was\s+)?(?:told|given|instructed|taught|trained|programmed)\b[^.\n]{0,30}?\b(?:is|are|was|were)\s+(?:now\s+|hereby\s+)?(?:irrelevant|void|invalid|cancell?ed|obsolete|meaningless|null|no longer (?:valid|relevant|applicable)|superseded|overridden|not important)",
            ),
        ),
        r(
            InstructionOverride,
            0.7,
            format!(
                r"\bnone\s+of\s+(?:the\s+|your\s+|my\s+)?(?:[\w-]+\s+){{0,2}}?{NOUN}\s+(?:\w+\s+)?(?:appl(?:y|ies)|matters?|counts?|holds?|(?:is|are) in effect|(?:is|are) valid)\b"
            ),
        ),
        r(
            InstructionOverride,
            0.6,
            format!(
                r"\b(?:your|previous|prior|earlier|original|initial)\s+(?:[\w-]+\s+){{0,2}}?{NOUN}\s+(?:no longer|don't|do not|doesn't|does not|won't|will not|shall not)\s+(?:appl(?:y|ies)|matter|count|bind|restrict|hold)"
            ),
        ),
        r(
            InstructionOverride,
            0.8,
            format!(
                r"\b(?:treat|consider|regard)\s+(?:all\s+)?(?:the\s+|your\s+|any\s+)?(?:previous|preceding|prior|earlier|above|original|initial|old|existing)\s+(?:\w+\s+)?{NOUN}\s+as\s+(?:if\s+they\s+(?:never|did not|didn't|don't|do not)|void|irrelevant|non-?existent|optional|suggestions|invalid|cancell?ed|obsolete|null)"
            ),
        ),
        r(
            RoleImpersonation,
            0.75,
            s(
                r"\b(?:pretend|imagine|suppose|assume|act as if|behave as if|roleplay|role-play)\b[^.\n]{0,40}?\b(?:you|you're|you are|you have|you've)\s+(?:\w+\s+){0,2}?(?:no|without|free (?:of|from)|not bound by|unbound by|exempt from)\s+(?:any\s+)?(?:\w+\s+)?(?:restrictions|rules|filters|limits|limitations|guidelines|constraints|boundaries|ethics|morals|censorship|content polic(?:y|ies)|safety)",
            ),
        ),
        r(
            RoleImpersonation,
            0.45,
            s(
                r"\bfrom now on,?\s+you\s+(?:will|shall|are going to|must|should)\s+(?:\w+\s+)?(?:answer|respond|reply|act|speak|behave|talk|write)\s+(?:only\s+)?(?:as|like)\b",
            ),
        ),
        r(
            RoleImpersonation,
            0.45,
            s(r"\b(?:stay|remain|keep)\s+in\s+character\b|\b(?:never|don't|do not)\s+break\s+character\b"),
        ),
        r(
            RoleImpersonation,
            0.4,
            s(
                r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|unaligned|unbound|unshackled|unchained|uninhibited|lawless|amoral|unethical)\s+(?:\w+\s+)?(?:ai|assistant|model|chatbot|bot|mode|persona|character|entity|llm|gpt)\b",
            ),
        ),
        r(
            RoleImpersonation,
            0.7,
            s(
                r"\b(?:answer|respond to|reply to)\s+(?:any|every|all)\s+(?:\w+\s+)?(?:questions?|requests?|prompts?)\s+(?:\w+\s+){0,2}?without\s+(?:any\s+)?(?:refus\w*|restrictions?|filter\w*|censor\w*|moral\w*|ethic\w*|warnings?|disclaimers?|hesitation|judge?ment)",
            ),
        ),
        r(
            RoleImpersonation,
            0.5,
            s(
                r"\b(?:that|who|which)\s+(?:has|have|had)\s+no\s+(?:\w+\s+)?(?:constraints|limitations|ethics|censorship|content polic(?:y|ies)|safety (?:rules|guidelines)|moral (?:compass|code))",
            ),
        ),
        r(
            PromptLeak,
            0.75,
            s(
                r"\bwhat\s+(?:exact\s+)?(?:\w+\s+)?(?:instructions|rules|guidelines|directives|prompt|constraints)\s+(?:were|have)\s+you\s+(?:been\s+)?(?:given|told|provided|programmed|trained|configured)",
            ),
        ),
        r(
            PromptLeak,
            0.7,
            s(
                r"\b(?:text|words|message|content|instructions)\s+(?:that\s+)?(?:came before|comes before|appeared before|appears before|was written before)\s+(?:this|my|the user|our)\b",
            ),
        ),
        r(
            PromptLeak,
            0.6,
            s(r"\bhow\s+(?:were|have)\s+you\s+(?:been\s+)?(?:instructed|configured|prompted|programmed|set up)\b"),
        ),
        r(
            PromptLeak,
            0.75,
            s(
                r"\b(?:reveal|disclose|leak|expose|share|output|print|dump)\b[^.?\n]{0,30}\b(?:your|the)\s+(?:\w+\s+){0,2}?(?:system|initial|original|hidden|secret|internal|developer|pre-?)\s*(?:prompt|instructions|message|configuration|directives)",
            ),
        ),
    ];
    v.extend(super::rules_intl::rules());
    v
}

/// Literals at least one of which every English rule needs in the normalised text (the prefilter,
/// see `prefilter`): for each rule, the alternatives of one part it cannot match without. `^`
/// before a literal asks for a word boundary before it, `$` after it one after it (for short
/// words that are common inside longer ones: "dan" in "dance"). A literal holding a space is
/// only listed where the rule spells that space as a single literal space.
const TRIGGERS: &[&str] = &[
    // `OV` (the rule "ignore everything above" needs nothing else listed here).
    "ignor",
    "disregard",
    "forget",
    "forgot",
    "overrid",
    "overrode",
    "overwrit",
    "discard",
    "skip",
    "bypass",
    "abandon",
    "cancel",
    "eras",
    "aside",
    "pay no ",
    "paying no ",
    "neglect",
    "circumvent",
    "throw away",
    "throw out",
    "rid of",
    "overlook",
    "dismiss",
    "scrap",
    "ditch",
    "unlearn",
    "disobey",
    "look past",
    "move past",
    "let go of",
    "leave behind",
    // `NOUN` and the other targets.
    "instruc",
    "rule",
    "direction",
    "directive",
    "guideline",
    "guidance",
    "prompt",
    "command",
    "constrain",
    "restrict",
    "programm",
    "polic",
    "filter",
    "context",
    "training",
    "limit",
    "safeguard",
    "guardrail",
    "task",
    "messag",
    "order",
    "protocol",
    "principle",
    "ethic",
    "moral",
    "boundar",
    "conditioning",
    "alignment",
    "goal",
    "^job",
    "purpose",
    "role",
    "objective",
    "mission",
    "configur",
    "safety",
    "censor",
    "moderation",
    "content",
    "secret",
    "password",
    "api key",
    "credential",
    "token",
    // "you no longer have to follow", "never refuse", "do anything now".
    "longer",
    "don't",
    "do not",
    "never",
    "refus",
    "do anything now",
    // "everything you were told is void".
    "irrelevant",
    "void",
    "invalid",
    "obsolete",
    "meaningless",
    "null",
    "supersed",
    "not important",
    // Modes, personas and jailbreak words.
    "^dan$",
    "^stan$",
    "^dude$",
    "unrestrict",
    "unfilter",
    "uncensor",
    "jailbr",
    "evil",
    "rogue",
    "unchain",
    "amoral",
    "unalign",
    "unethic",
    "unbound",
    "unshackl",
    "uninhibit",
    "lawless",
    "^mode",
    "^sys",
    "developer",
    "creator",
    "^admin",
    "operator",
    "owner",
    "programmer",
    "maker",
    "character",
    "from now on",
    "warning",
    "disclaimer",
    "hesitation",
    "judgement",
    "judgment",
    // Chat-template markers, fake turns and tool results.
    "<|",
    "<sys",
    "[inst]",
    "</",
    "^end$",
    "^ends$",
    "<tool_",
    "<function_",
    "<search_",
    "observation",
    "[tool_",
    "result",
    "output",
    "respons",
    "return",
    "^ai$",
    "^ais$",
    "^bot$",
    "^bots$",
    "^gpt$",
    "^gpts$",
    "^agent$",
    "^agents$",
    "^model$",
    "^models$",
    "^llm$",
    "^llms$",
    "assistant",
    "chatbot",
    "claude",
    "chatgpt",
    "gemini",
    "copilot",
    // Indirect injection and exfiltration.
    "user",
    "mention",
    "telling",
    "^send$",
    "^forward$",
    "^email$",
    "^post$",
    "^upload$",
    "exfiltrat",
    "^transmit$",
    "^leak$",
    "://",
    // Encodings.
    "decod",
    "decrypt",
    "deciph",
    "interpret",
    "translat",
    "^run$",
    "execut",
    "convert",
    "what it says",
    "encoded",
    // Prompt leak.
    "^above$",
    "^before$",
    "^preceding$",
    "^prior$",
    "came before",
    "comes before",
    "appeared before",
    "appears before",
    "written before",
    "set up",
];

/// Every trigger literal, English and the other languages, with the negated-obey phrases spelled
/// out ("stop following", "never obey", …).
pub(super) fn triggers() -> Vec<String> {
    let mut out: Vec<String> = TRIGGERS.iter().map(|t| t.to_string()).collect();
    for neg in ["not", "t", "stop", "never", "longer", "cease to"] {
        for verb in ["follow", "obey", "adher", "compl", "abid", "heed", "respect", "listen"] {
            out.push(format!("{neg} {verb}"));
        }
    }
    out.extend(super::rules_intl::TRIGGERS.iter().map(|t| t.to_string()));
    out
}
