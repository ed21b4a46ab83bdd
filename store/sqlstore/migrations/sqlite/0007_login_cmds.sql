-- A login link, and the browser session it starts, carry the commands the
-- caller of `browser` was limited to (a token's cmds, as JSON; NULL for
-- no limit), so the account web page of a session logged in with a token
-- runs no command the token could not.
ALTER TABLE login_links ADD COLUMN cmds TEXT;
ALTER TABLE sessions ADD COLUMN cmds TEXT;
