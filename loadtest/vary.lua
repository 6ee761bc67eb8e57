-- Shared by post.lua and ab.lua (loaded with dofile from the calling script's directory).
-- VARY=1: every request's last message starts with a new number ("#17 ..."), so nothing that
-- depends on the exact prompt (the tokenizer's caches, a response cache) sees the same text
-- twice; earlier messages (the system prompt) repeat, as in real traffic.
--
-- Returns split(body, script): the body cut just inside its last "content" string, as head and
-- tail (a request body is head .. "#" .. n .. " " .. tail); errors (naming `script`) when the
-- body has no such string.
return function(body, script)
   local at, pos = nil, 1
   while true do
      local s, e = string.find(body, '"content":"', pos, true)
      if not s then break end
      at, pos = e, e + 1
   end
   if not at then
      error(script .. ": VARY=1 needs a \"content\" string in the body")
   end
   return string.sub(body, 1, at), string.sub(body, at + 1)
end
