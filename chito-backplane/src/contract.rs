//! The core's side of the boundary (`chito::rooms`), in one place.

pub(crate) use chito::rooms::{
    Backplane, Delivery, Envelope, MemberId, MembersQuery, NodeId, PresenceUpdate, PublishError,
    RemoteMembers, RemoteSink, RoomSnapshot, Target,
};
pub(crate) use chito::SharedMessage;
