#if canImport(Glibc)
import Glibc
#endif

/// The user and group the worker runs as and gives the unix socket to (--user, --group).
package struct Identity: Equatable, Sendable {
    var userName: String?
    var uid: uid_t?
    var gid: gid_t?
    /// The user's own primary group: kept as a supplementary group when --group names
    /// another (the MTA's), so that a policy file `root:USER 0640` stays readable.
    var userGid: gid_t?

    /// Looks the names up (a number is taken as an id when no such name exists). With
    /// --user alone, the group is the user's primary group.
    package static func resolve(user: String?, group: String?) throws(DaemonError) -> Identity {
        var identity = Identity()
        if let user {
            guard let entry = getpwnam(user) ?? UInt32(user).flatMap({ getpwuid($0) }) else {
                throw DaemonError(.usage, "no such user: \(user)")
            }
            identity.userName = String(cString: entry.pointee.pw_name)
            identity.uid = entry.pointee.pw_uid
            identity.gid = entry.pointee.pw_gid
            identity.userGid = entry.pointee.pw_gid
        }
        if let group {
            guard let entry = getgrnam(group) ?? UInt32(group).flatMap({ getgrgid($0) }) else {
                throw DaemonError(.usage, "no such group: \(group)")
            }
            identity.gid = entry.pointee.gr_gid
        }
        return identity
    }

    var changesAnything: Bool { uid != nil || gid != nil }

    /// Only root may switch; asking for what we already are is fine.
    func checkCanSwitch() throws(DaemonError) {
        guard geteuid() != 0 else { return }
        if let uid, uid != geteuid() {
            throw DaemonError(.noPermission, "only root can switch to user \(userName ?? String(uid))")
        }
        if let gid, gid != getegid(), uid == nil || uid != geteuid() {
            throw DaemonError(.noPermission, "only root can switch to group \(gid)")
        }
    }

    /// Gives the socket to the milter's user and group, mode 0660: the MTA's group
    /// connects, nobody else does (Sendmail also refuses a world-writable socket).
    /// chmod first, while root still owns it: chmod of another user's file needs
    /// CAP_FOWNER, which the systemd unit does not grant.
    func takeOwnership(ofSocket path: String) throws(DaemonError) {
        if chmod(path, 0o660) != 0 {
            throw DaemonError.system(.noPermission, "cannot chmod socket \(path)")
        }
        if changesAnything, chown(path, uid ?? uid_t.max, gid ?? gid_t.max) != 0 {
            throw DaemonError.system(.noPermission, "cannot chown socket \(path)")
        }
    }

    /// Drops root for good: supplementary groups, then the group, then the user (after the
    /// user nothing else may change), then proves that root cannot be regained. Call before
    /// any thread exists or while only threads of ours exist (glibc applies set*id to all).
    func drop() throws(DaemonError) {
        guard changesAnything else { return }
        if let gid {
            if let userName, uid != nil {
                guard initgroups(userName, userGid ?? gid) == 0 else {
                    throw DaemonError.system(.noPermission, "initgroups(\(userName))")
                }
                if let userGid, userGid != gid {
                    let size = getgroups(0, nil)
                    var groups = [gid_t](repeating: 0, count: Int(max(size, 0)) + 1)
                    let count = getgroups(size, &groups)
                    guard size >= 0, count >= 0 else { throw DaemonError.system(.noPermission, "getgroups") }
                    groups[Int(count)] = gid
                    guard setgroups(Int(count) + 1, &groups) == 0 else {
                        throw DaemonError.system(.noPermission, "setgroups")
                    }
                }
            } else {
                var groups = [gid]
                guard setgroups(1, &groups) == 0 else { throw DaemonError.system(.noPermission, "setgroups") }
            }
            guard setgid(gid) == 0 else { throw DaemonError.system(.noPermission, "setgid(\(gid))") }
        }
        if let uid {
            guard setuid(uid) == 0 else { throw DaemonError.system(.noPermission, "setuid(\(uid))") }
        }

        if let gid, getgid() != gid || getegid() != gid {
            throw DaemonError(.noPermission, "group is still \(getgid())/\(getegid()) after setgid(\(gid))")
        }
        if let uid {
            guard getuid() == uid, geteuid() == uid else {
                throw DaemonError(.noPermission, "user is still \(getuid())/\(geteuid()) after setuid(\(uid))")
            }
            if uid != 0, setuid(0) == 0 || seteuid(0) == 0 {
                throw DaemonError(.noPermission, "root privileges could be regained after setuid(\(uid))")
            }
        }
    }
}
