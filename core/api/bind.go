package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"
)

// decodeJSON reads the request body into v with the reference's rejection
// rules (anchor-api.md §1.2): wrong Content-Type 415, broken JSON 400, wrong
// shape 422, oversized 413. It writes the error and returns false on failure.
func decodeJSON(c *fasthttp.RequestCtx, v any) bool {
	if !isJSONContentType(c.Request.Header.ContentType()) {
		writeError(c, fasthttp.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return false
	}
	body := c.PostBody()
	if len(body) > MaxJSONBody {
		writeError(c, fasthttp.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF) || len(bytes.TrimSpace(body)) == 0 {
			writeError(c, fasthttp.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
		} else {
			writeError(c, fasthttp.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		}
		return false
	}
	return true
}

// missing rejects a request whose required field was absent, as serde does.
func missing(c *fasthttp.RequestCtx, field string) {
	writeError(c, fasthttp.StatusUnprocessableEntity,
		fmt.Sprintf("Failed to deserialize the JSON body into the target type: missing field `%s`", field))
}

// isJSONContentType accepts application/json and application/*+json with parameters.
func isJSONContentType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	if bytes.EqualFold(ct, []byte("application/json")) {
		return true
	}
	return len(ct) > len("application/+json") && bytes.HasPrefix(bytes.ToLower(ct), []byte("application/")) &&
		bytes.HasSuffix(bytes.ToLower(ct), []byte("+json"))
}
