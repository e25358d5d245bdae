package sqlite

import (
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/store"
)

// The peer quota.
//
// A peer is a member key (a certificate's subject public key) holding a
// live certificate: not revoked, not expired (store.EnrollTx.PeerLimit). Counting those exactly on every enrollment
// would scan the formation's inventory, so the formation's peer_count is an
// upper bound kept in O(1): +1 per certificate issued, -1 per certificate
// revoked while still live. (A certificate live when revoked was live at
// every earlier moment, so it was counted; one revoked after it expired may
// already be out of a recount, so it is not subtracted: the bound never
// falls below the truth.) Below the limit the bound decides. At the limit,
// peerRoom counts exactly, lets a renewal (a key that is already a peer)
// through, and sets the bound back to the live certificates, so expired
// ones stop counting.
//
// The exact count scans the formation's certificates, in the single writer.
// A formation that is really full would pay that scan on every refused
// enrollment, so a full result is kept for peerFullFor and refusals in
// that time cost nothing.

// peerFullFor is how long a full exact count refuses without counting again.
const peerFullFor = 1000 // ms

// peerRoom decides an enrollment with a certificate whose formation is at
// its peer limit by peer_count.
func (t *txn) peerRoom(e store.EnrollTx) error {
	refused := fmt.Errorf("%w: max_peers_per_formation %d", store.ErrQuota, e.PeerLimit)
	k := [2]string{e.OrgID, e.AppID}
	if at, ok := t.s.peerFull[k]; ok && e.NowMs >= at && e.NowMs-at < peerFullFor {
		return refused
	}
	now := int64(e.NowMs)
	var live, peers, renewing int64
	if err := t.row(`SELECT count(*), count(DISTINCT subject_public_key), coalesce(max(subject_public_key = ?3), 0)
		FROM certificates WHERE org_id = ?1 AND app_id = ?2 AND revoked = 0 AND (expires_at = 0 OR expires_at > ?4)`,
		e.OrgID, e.AppID, e.Certificate.SubjectKey, now).Scan(&live, &peers, &renewing); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE formations SET peer_count = ? WHERE org_id = ? AND app_id = ?`, live, e.OrgID, e.AppID); err != nil {
		return err
	}
	if renewing == 0 && peers >= int64(e.PeerLimit) {
		t.s.peerFull[k] = e.NowMs
		return refused
	}
	delete(t.s.peerFull, k)
	return nil
}
