-- a new connection per request
wrk.headers["Connection"] = "close"
