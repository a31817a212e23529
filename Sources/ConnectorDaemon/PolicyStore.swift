import ConnectorPolicy
import Synchronization

/// The policy in force. A reload swaps in a new compiled policy only when the file is valid;
/// sessions hold the `PolicySet` they started with, so a reload never changes a judgment
/// half-way through a session.
package final class PolicyStore: Sendable {
    let path: String
    private let state: Mutex<PolicySet>

    /// Loads the policy; throws every error of an invalid file.
    init(path: String) throws(PolicyErrors) {
        self.path = path
        state = Mutex(try PolicyStore.compile(path: path))
    }

    var current: PolicySet { state.withLock { $0 } }

    /// Reads the file again. On error the running policy stays and the errors are thrown.
    @discardableResult
    func reload() throws(PolicyErrors) -> PolicySet {
        let fresh = try PolicyStore.compile(path: path)
        state.withLock { $0 = fresh }
        return fresh
    }

    package static func compile(path: String) throws(PolicyErrors) -> PolicySet {
        switch PolicyParser.load(path: path) {
        case .success(let policy): return PolicySet(policy)
        case .failure(let errors): throw errors
        }
    }
}
