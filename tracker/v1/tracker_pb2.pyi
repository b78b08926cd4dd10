from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    CINE_MRI: _ClassVar[Modality]
    ENDOSCOPY: _ClassVar[Modality]
    OTHER: _ClassVar[Modality]

class PixelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_TYPE_UNSPECIFIED: _ClassVar[PixelType]
    UINT8: _ClassVar[PixelType]
    UINT16: _ClassVar[PixelType]
    INT16: _ClassVar[PixelType]
    FLOAT32: _ClassVar[PixelType]

class FrameStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_STATUS_UNSPECIFIED: _ClassVar[FrameStatus]
    OK: _ClassVar[FrameStatus]
    LATE: _ClassVar[FrameStatus]
    DROPPED: _ClassVar[FrameStatus]
    ERROR: _ClassVar[FrameStatus]
    LOST: _ClassVar[FrameStatus]

class BudgetPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_POLICY_UNSPECIFIED: _ClassVar[BudgetPolicy]
    LATEST: _ClassVar[BudgetPolicy]
    DEGRADE: _ClassVar[BudgetPolicy]
    STRICT: _ClassVar[BudgetPolicy]

class TimestampClock(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIMESTAMP_CLOCK_UNSPECIFIED: _ClassVar[TimestampClock]
    RELATIVE: _ClassVar[TimestampClock]
    UNIX: _ClassVar[TimestampClock]

class BeamState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BEAM_STATE_UNSPECIFIED: _ClassVar[BeamState]
    BEAM_ON: _ClassVar[BeamState]
    BEAM_HOLD: _ClassVar[BeamState]

class MaskEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_ENCODING_UNSPECIFIED: _ClassVar[MaskEncoding]
    RLE: _ClassVar[MaskEncoding]
    PNG: _ClassVar[MaskEncoding]
MODALITY_UNSPECIFIED: Modality
CINE_MRI: Modality
ENDOSCOPY: Modality
OTHER: Modality
PIXEL_TYPE_UNSPECIFIED: PixelType
UINT8: PixelType
UINT16: PixelType
INT16: PixelType
FLOAT32: PixelType
FRAME_STATUS_UNSPECIFIED: FrameStatus
OK: FrameStatus
LATE: FrameStatus
DROPPED: FrameStatus
ERROR: FrameStatus
LOST: FrameStatus
BUDGET_POLICY_UNSPECIFIED: BudgetPolicy
LATEST: BudgetPolicy
DEGRADE: BudgetPolicy
STRICT: BudgetPolicy
TIMESTAMP_CLOCK_UNSPECIFIED: TimestampClock
RELATIVE: TimestampClock
UNIX: TimestampClock
BEAM_STATE_UNSPECIFIED: BeamState
BEAM_ON: BeamState
BEAM_HOLD: BeamState
MASK_ENCODING_UNSPECIFIED: MaskEncoding
RLE: MaskEncoding
PNG: MaskEncoding

class Geometry(_message.Message):
    __slots__ = ("spacing_mm", "origin_mm", "x_direction", "y_direction")
    SPACING_MM_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_MM_FIELD_NUMBER: _ClassVar[int]
    X_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    Y_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    spacing_mm: _containers.RepeatedScalarFieldContainer[float]
    origin_mm: _containers.RepeatedScalarFieldContainer[float]
    x_direction: _containers.RepeatedScalarFieldContainer[float]
    y_direction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, spacing_mm: _Optional[_Iterable[float]] = ..., origin_mm: _Optional[_Iterable[float]] = ..., x_direction: _Optional[_Iterable[float]] = ..., y_direction: _Optional[_Iterable[float]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("height", "width", "encoding", "rle_counts", "data")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    RLE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    encoding: MaskEncoding
    rle_counts: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., encoding: _Optional[_Union[MaskEncoding, str]] = ..., rle_counts: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y", "positive")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    positive: bool
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., positive: _Optional[bool] = ...) -> None: ...

class Points(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("mask", "box", "points")
    MASK_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    mask: Mask
    box: Box
    points: Points
    def __init__(self, mask: _Optional[_Union[Mask, _Mapping]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., points: _Optional[_Union[Points, _Mapping]] = ...) -> None: ...

class ObjectPrompt(_message.Message):
    __slots__ = ("object_id", "label", "prompt", "reference_mm")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MM_FIELD_NUMBER: _ClassVar[int]
    object_id: int
    label: str
    prompt: Prompt
    reference_mm: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, object_id: _Optional[int] = ..., label: _Optional[str] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., reference_mm: _Optional[_Iterable[float]] = ...) -> None: ...

class GatingConfig(_message.Message):
    __slots__ = ("enabled", "margin_mm", "window_mask", "min_inside_fraction", "min_presence", "stall_timeout_ms", "beam_latency_ms", "horizon_ms", "predictor", "object_ids", "guard_mm", "no_guard", "min_confidence", "guard_sigmas", "confidence_error_mm", "rule", "min_checked_forecasts")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MASK_FIELD_NUMBER: _ClassVar[int]
    MIN_INSIDE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIN_PRESENCE_FIELD_NUMBER: _ClassVar[int]
    STALL_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    BEAM_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_MS_FIELD_NUMBER: _ClassVar[int]
    PREDICTOR_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    GUARD_MM_FIELD_NUMBER: _ClassVar[int]
    NO_GUARD_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    GUARD_SIGMAS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_ERROR_MM_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MIN_CHECKED_FORECASTS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    margin_mm: float
    window_mask: Mask
    min_inside_fraction: float
    min_presence: float
    stall_timeout_ms: float
    beam_latency_ms: float
    horizon_ms: float
    predictor: str
    object_ids: _containers.RepeatedScalarFieldContainer[int]
    guard_mm: float
    no_guard: bool
    min_confidence: float
    guard_sigmas: float
    confidence_error_mm: float
    rule: str
    min_checked_forecasts: int
    def __init__(self, enabled: _Optional[bool] = ..., margin_mm: _Optional[float] = ..., window_mask: _Optional[_Union[Mask, _Mapping]] = ..., min_inside_fraction: _Optional[float] = ..., min_presence: _Optional[float] = ..., stall_timeout_ms: _Optional[float] = ..., beam_latency_ms: _Optional[float] = ..., horizon_ms: _Optional[float] = ..., predictor: _Optional[str] = ..., object_ids: _Optional[_Iterable[int]] = ..., guard_mm: _Optional[float] = ..., no_guard: _Optional[bool] = ..., min_confidence: _Optional[float] = ..., guard_sigmas: _Optional[float] = ..., confidence_error_mm: _Optional[float] = ..., rule: _Optional[str] = ..., min_checked_forecasts: _Optional[int] = ...) -> None: ...

class GatingDecision(_message.Message):
    __slots__ = ("state", "reason", "frame_index", "stalled", "decided_at_s", "cause", "guard_mm")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_S_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    GUARD_MM_FIELD_NUMBER: _ClassVar[int]
    state: BeamState
    reason: str
    frame_index: int
    stalled: bool
    decided_at_s: float
    cause: str
    guard_mm: float
    def __init__(self, state: _Optional[_Union[BeamState, str]] = ..., reason: _Optional[str] = ..., frame_index: _Optional[int] = ..., stalled: _Optional[bool] = ..., decided_at_s: _Optional[float] = ..., cause: _Optional[str] = ..., guard_mm: _Optional[float] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("modality", "engine", "engine_options", "objects", "latency_budget_ms", "frame_rate_hz", "geometry", "mask_encoding", "client_name", "height", "width", "budget_policy", "timestamp_clock", "gating")
    class EngineOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    MASK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    BUDGET_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_CLOCK_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    engine: str
    engine_options: _containers.ScalarMap[str, str]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectPrompt]
    latency_budget_ms: float
    frame_rate_hz: float
    geometry: Geometry
    mask_encoding: MaskEncoding
    client_name: str
    height: int
    width: int
    budget_policy: BudgetPolicy
    timestamp_clock: TimestampClock
    gating: GatingConfig
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., engine: _Optional[str] = ..., engine_options: _Optional[_Mapping[str, str]] = ..., objects: _Optional[_Iterable[_Union[ObjectPrompt, _Mapping]]] = ..., latency_budget_ms: _Optional[float] = ..., frame_rate_hz: _Optional[float] = ..., geometry: _Optional[_Union[Geometry, _Mapping]] = ..., mask_encoding: _Optional[_Union[MaskEncoding, str]] = ..., client_name: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., budget_policy: _Optional[_Union[BudgetPolicy, str]] = ..., timestamp_clock: _Optional[_Union[TimestampClock, str]] = ..., gating: _Optional[_Union[GatingConfig, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("index", "timestamp_s", "height", "width", "channels", "pixel_type", "pixels")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    index: int
    timestamp_s: float
    height: int
    width: int
    channels: int
    pixel_type: PixelType
    pixels: bytes
    def __init__(self, index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., pixel_type: _Optional[_Union[PixelType, str]] = ..., pixels: _Optional[bytes] = ...) -> None: ...

class PromptUpdate(_message.Message):
    __slots__ = ("update_id", "add", "remove_object_id", "correct")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    update_id: int
    add: ObjectPrompt
    remove_object_id: int
    correct: ObjectPrompt
    def __init__(self, update_id: _Optional[int] = ..., add: _Optional[_Union[ObjectPrompt, _Mapping]] = ..., remove_object_id: _Optional[int] = ..., correct: _Optional[_Union[ObjectPrompt, _Mapping]] = ...) -> None: ...

class TrackRequest(_message.Message):
    __slots__ = ("open", "frame", "prompt_update")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    open: SessionOpen
    frame: Frame
    prompt_update: PromptUpdate
    def __init__(self, open: _Optional[_Union[SessionOpen, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., prompt_update: _Optional[_Union[PromptUpdate, _Mapping]] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "version", "capabilities", "device", "random_weights", "scheduler", "workers", "max_batch", "max_queue_delay_ms", "threads_per_worker")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    THREADS_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    device: str
    random_weights: bool
    scheduler: str
    workers: int
    max_batch: int
    max_queue_delay_ms: float
    threads_per_worker: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., random_weights: _Optional[bool] = ..., scheduler: _Optional[str] = ..., workers: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_queue_delay_ms: _Optional[float] = ..., threads_per_worker: _Optional[int] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("session_id", "server_version", "engine", "latency_budget_ms", "warnings", "protocol_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    server_version: str
    engine: EngineInfo
    latency_budget_ms: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    protocol_version: str
    def __init__(self, session_id: _Optional[str] = ..., server_version: _Optional[str] = ..., engine: _Optional[_Union[EngineInfo, _Mapping]] = ..., latency_budget_ms: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ..., protocol_version: _Optional[str] = ...) -> None: ...

class ObjectResult(_message.Message):
    __slots__ = ("object_id", "label", "mask", "score", "present", "box", "centroid_x_px", "centroid_y_px", "centroid_mm", "area_px", "box_mm", "displacement_mm", "predicted_mm", "prediction_horizon_ms", "confidence")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CENTROID_X_PX_FIELD_NUMBER: _ClassVar[int]
    CENTROID_Y_PX_FIELD_NUMBER: _ClassVar[int]
    CENTROID_MM_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    BOX_MM_FIELD_NUMBER: _ClassVar[int]
    DISPLACEMENT_MM_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_MM_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_HORIZON_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    object_id: int
    label: str
    mask: Mask
    score: float
    present: bool
    box: Box
    centroid_x_px: float
    centroid_y_px: float
    centroid_mm: _containers.RepeatedScalarFieldContainer[float]
    area_px: int
    box_mm: _containers.RepeatedScalarFieldContainer[float]
    displacement_mm: _containers.RepeatedScalarFieldContainer[float]
    predicted_mm: _containers.RepeatedScalarFieldContainer[float]
    prediction_horizon_ms: float
    confidence: float
    def __init__(self, object_id: _Optional[int] = ..., label: _Optional[str] = ..., mask: _Optional[_Union[Mask, _Mapping]] = ..., score: _Optional[float] = ..., present: _Optional[bool] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., centroid_x_px: _Optional[float] = ..., centroid_y_px: _Optional[float] = ..., centroid_mm: _Optional[_Iterable[float]] = ..., area_px: _Optional[int] = ..., box_mm: _Optional[_Iterable[float]] = ..., displacement_mm: _Optional[_Iterable[float]] = ..., predicted_mm: _Optional[_Iterable[float]] = ..., prediction_horizon_ms: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class FrameTiming(_message.Message):
    __slots__ = ("receive_time_s", "queue_ms", "compute_ms", "total_ms", "stages_ms", "since_acquisition_ms", "batch_size")
    class StagesMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RECEIVE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    STAGES_MS_FIELD_NUMBER: _ClassVar[int]
    SINCE_ACQUISITION_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    receive_time_s: float
    queue_ms: float
    compute_ms: float
    total_ms: float
    stages_ms: _containers.ScalarMap[str, float]
    since_acquisition_ms: float
    batch_size: int
    def __init__(self, receive_time_s: _Optional[float] = ..., queue_ms: _Optional[float] = ..., compute_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., stages_ms: _Optional[_Mapping[str, float]] = ..., since_acquisition_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame_index", "status", "message", "objects", "timing", "applied_update_ids", "degradations", "degradation_reason", "reprompts", "gating")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    APPLIED_UPDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATIONS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_REASON_FIELD_NUMBER: _ClassVar[int]
    REPROMPTS_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    status: FrameStatus
    message: str
    objects: _containers.RepeatedCompositeFieldContainer[ObjectResult]
    timing: FrameTiming
    applied_update_ids: _containers.RepeatedScalarFieldContainer[int]
    degradations: _containers.RepeatedScalarFieldContainer[str]
    degradation_reason: str
    reprompts: _containers.RepeatedCompositeFieldContainer[RepromptEvent]
    gating: GatingDecision
    def __init__(self, frame_index: _Optional[int] = ..., status: _Optional[_Union[FrameStatus, str]] = ..., message: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[ObjectResult, _Mapping]]] = ..., timing: _Optional[_Union[FrameTiming, _Mapping]] = ..., applied_update_ids: _Optional[_Iterable[int]] = ..., degradations: _Optional[_Iterable[str]] = ..., degradation_reason: _Optional[str] = ..., reprompts: _Optional[_Iterable[_Union[RepromptEvent, _Mapping]]] = ..., gating: _Optional[_Union[GatingDecision, _Mapping]] = ...) -> None: ...

class RepromptEvent(_message.Message):
    __slots__ = ("object_id", "label", "reason", "action", "observed_frame", "score", "iou", "message")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FRAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    IOU_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    object_id: int
    label: str
    reason: str
    action: str
    observed_frame: int
    score: float
    iou: float
    message: str
    def __init__(self, object_id: _Optional[int] = ..., label: _Optional[str] = ..., reason: _Optional[str] = ..., action: _Optional[str] = ..., observed_frame: _Optional[int] = ..., score: _Optional[float] = ..., iou: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class PromptAck(_message.Message):
    __slots__ = ("update_id", "accepted", "message")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    update_id: int
    accepted: bool
    message: str
    def __init__(self, update_id: _Optional[int] = ..., accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class TrackResponse(_message.Message):
    __slots__ = ("started", "frame", "prompt_ack", "gating")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ACK_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    frame: FrameResult
    prompt_ack: PromptAck
    gating: GatingDecision
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., frame: _Optional[_Union[FrameResult, _Mapping]] = ..., prompt_ack: _Optional[_Union[PromptAck, _Mapping]] = ..., gating: _Optional[_Union[GatingDecision, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("server_version", "protocol_version", "default_engine", "engines", "active_sessions", "max_sessions", "max_frame_pixels", "max_objects_per_session")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    protocol_version: str
    default_engine: str
    engines: _containers.RepeatedCompositeFieldContainer[EngineInfo]
    active_sessions: int
    max_sessions: int
    max_frame_pixels: int
    max_objects_per_session: int
    def __init__(self, server_version: _Optional[str] = ..., protocol_version: _Optional[str] = ..., default_engine: _Optional[str] = ..., engines: _Optional[_Iterable[_Union[EngineInfo, _Mapping]]] = ..., active_sessions: _Optional[int] = ..., max_sessions: _Optional[int] = ..., max_frame_pixels: _Optional[int] = ..., max_objects_per_session: _Optional[int] = ...) -> None: ...
