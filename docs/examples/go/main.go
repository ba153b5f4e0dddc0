// Receive intuned-relay webhooks and verify them with the Standard Webhooks library.
//
//	go mod init receiver && go get github.com/standard-webhooks/standard-webhooks/libraries/go
//	RELAY_SIGNING_SECRET=whsec_... PORT=8000 go run .
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

type event struct {
	Type string `json:"type"`
	Data struct {
		RunID    string          `json:"runId"`
		Metadata json.RawMessage `json:"metadata"`
	} `json:"data"`
}

func main() {
	// The secret from GET /v1/signing-secret (whsec_...).
	wh, err := standardwebhooks.NewWebhook(os.Getenv("RELAY_SIGNING_SECRET"))
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[string]bool{} // keep this in your database: webhook-ids already acted on

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Verify the raw body, before any JSON parsing.
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			log.Printf("refused: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var e event
		if err := json.Unmarshal(body, &e); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		seen := handled[id] // at least once: the same event may come again
		handled[id] = true
		mu.Unlock()
		if !seen {
			log.Printf("verified %s run %s webhook-id %s metadata %s", e.Type, e.Data.RunID, id, e.Data.Metadata)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8000"
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
