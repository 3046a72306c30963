package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// bulkOp is one operation of a BulkRequest.
type bulkOp struct {
	Method  string          `json:"method"`
	Path    string          `json:"path"`
	BulkID  string          `json:"bulkId,omitempty"`
	Version string          `json:"version,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// serveBulk is POST /Bulk: every operation is carried out, whatever the
// others' outcome (failOnErrors is honoured when set), and answered with
// its status as a string. A body over maxPayloadSize, or more operations
// than maxOperations, gets 413 and nothing is carried out.
func (e *Emulator) serveBulk(w http.ResponseWriter, r *http.Request) {
	p := e.profile
	if !p.Bulk {
		e.Serve(w, r, EndpointBulk, -1, func(w http.ResponseWriter, _ *http.Request) {
			e.writeError(w, &scimError{http.StatusNotImplemented, "", "bulk is not supported"})
		})
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(max(p.MaxPayloadSize, p.ProxyLimit))+1))
	if err != nil {
		e.writeError(w, &scimError{http.StatusBadRequest, "invalidSyntax", "reading the body: " + err.Error()})
		return
	}
	if p.ProxyLimit > 0 && len(raw) > p.ProxyLimit {
		e.Serve(w, r, EndpointBulk, -1, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = w.Write([]byte("<html><body><h1>413 Request Entity Too Large</h1></body></html>"))
		})
		return
	}
	if len(raw) > p.MaxPayloadSize {
		e.Serve(w, r, EndpointBulk, -1, func(w http.ResponseWriter, _ *http.Request) {
			e.writeError(w, &scimError{http.StatusRequestEntityTooLarge, "",
				fmt.Sprintf("the request exceeds maxPayloadSize (%d bytes)", p.MaxPayloadSize)})
		})
		return
	}
	var req struct {
		FailOnErrors int      `json:"failOnErrors"`
		Operations   []bulkOp `json:"Operations"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		e.writeError(w, &scimError{http.StatusBadRequest, "invalidSyntax", "the body is not a BulkRequest: " + err.Error()})
		return
	}
	e.Serve(w, r, EndpointBulk, len(req.Operations), func(w http.ResponseWriter, r *http.Request) {
		if len(req.Operations) > p.MaxOperations {
			e.writeError(w, &scimError{http.StatusRequestEntityTooLarge, "",
				fmt.Sprintf("the request has %d operations, more than maxOperations (%d)", len(req.Operations), p.MaxOperations)})
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		out := make([]map[string]any, 0, len(req.Operations))
		errs := 0
		for _, op := range req.Operations {
			if req.FailOnErrors > 0 && errs >= req.FailOnErrors {
				break
			}
			res := e.bulkOne(r, op)
			if s, _ := strconv.Atoi(res["status"].(string)); s >= 400 {
				errs++
			}
			out = append(out, res)
		}
		e.WriteJSON(w, http.StatusOK, map[string]any{"schemas": []string{SchemaBulkResp}, "Operations": out})
	})
}

// bulkOne carries out one operation, or answers its injected fault.
// Callers hold e.mu.
func (e *Emulator) bulkOne(r *http.Request, op bulkOp) map[string]any {
	f := e.opFault(op.BulkID)
	if f == nil {
		return e.bulkDo(r, op)
	}
	if f.AfterApply {
		e.bulkDo(r, op)
	}
	res := map[string]any{"method": op.Method, "status": strconv.Itoa(f.Status),
		"response": errorBody(f.Status, "", fmt.Sprintf("injected fault: HTTP %d", f.Status))}
	if op.BulkID != "" {
		res["bulkId"] = op.BulkID
	}
	return res
}

// bulkDo carries out one operation. Callers hold e.mu.
func (e *Emulator) bulkDo(r *http.Request, op bulkOp) map[string]any {
	res := map[string]any{"method": op.Method}
	if op.BulkID != "" {
		res["bulkId"] = op.BulkID
	}
	fail := func(se *scimError) map[string]any {
		res["status"] = strconv.Itoa(se.Status)
		res["response"] = errorBody(se.Status, se.ScimType, se.Detail)
		return res
	}
	ok := func(status int, u *User, id string) map[string]any {
		res["status"] = strconv.Itoa(status)
		res["location"] = e.location(r, id)
		if u != nil && e.profile.ETag {
			res["version"] = u.version()
		}
		return res
	}
	method := strings.ToUpper(op.Method)
	if method == http.MethodPost {
		if op.BulkID == "" {
			return fail(&scimError{http.StatusBadRequest, "invalidSyntax", "bulkId is required for POST"})
		}
		if !strings.EqualFold(op.Path, "/Users") {
			return fail(&scimError{http.StatusNotFound, "", "no endpoint POST " + op.Path})
		}
		var data map[string]any
		if err := json.Unmarshal(op.Data, &data); err != nil {
			return fail(&scimError{http.StatusBadRequest, "invalidSyntax", "data is not a resource"})
		}
		u, se := e.create(data)
		if se != nil {
			return fail(se)
		}
		return ok(http.StatusCreated, u, u.ID)
	}
	id, found := strings.CutPrefix(op.Path, "/Users/")
	if !found || id == "" {
		return fail(&scimError{http.StatusNotFound, "", "no endpoint " + op.Method + " " + op.Path})
	}
	switch method {
	case http.MethodPut:
		var data map[string]any
		if err := json.Unmarshal(op.Data, &data); err != nil {
			return fail(&scimError{http.StatusBadRequest, "invalidSyntax", "data is not a resource"})
		}
		u, se := e.replace(id, op.Version, data)
		if se != nil {
			return fail(se)
		}
		return ok(http.StatusOK, u, id)
	case http.MethodPatch:
		var data struct {
			Operations []patchOp `json:"Operations"`
		}
		if err := json.Unmarshal(op.Data, &data); err != nil {
			return fail(&scimError{http.StatusBadRequest, "invalidSyntax", "data is not a PatchOp"})
		}
		u, se := e.patch(id, op.Version, data.Operations)
		if se != nil {
			return fail(se)
		}
		return ok(http.StatusOK, u, id)
	case http.MethodDelete:
		if se := e.remove(id, op.Version); se != nil {
			return fail(se)
		}
		return ok(http.StatusNoContent, nil, id)
	}
	return fail(&scimError{http.StatusMethodNotAllowed, "", op.Method + " is not allowed in a bulk operation"})
}
