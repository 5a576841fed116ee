from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    PNG: _ClassVar[ImageFormat]
    RAW: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
PNG: ImageFormat
RAW: ImageFormat

class RawImage(_message.Message):
    __slots__ = ("pixels", "shape")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, pixels: _Optional[bytes] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class OutputImage(_message.Message):
    __slots__ = ("png", "raw")
    PNG_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    raw: RawImage
    def __init__(self, png: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    top_k: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., top_k: _Optional[int] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("label", "class_id", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    class_id: int
    score: float
    def __init__(self, label: _Optional[str] = ..., class_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("classes",)
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model", "model_version", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "score_threshold", "iou_threshold", "max_detections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    score_threshold: float
    iou_threshold: float
    max_detections: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max", "label", "class_id", "score")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str
    class_id: int
    score: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ..., label: _Optional[str] = ..., class_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("detections", "width", "height")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    width: int
    height: int
    def __init__(self, detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("model", "model_version", "results", "score_threshold", "iou_threshold", "max_detections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Detections]
    score_threshold: float
    iou_threshold: float
    max_detections: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Detections, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ...) -> None: ...

class GetVectorsRequest(_message.Message):
    __slots__ = ("model", "model_version", "words", "unit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    words: _containers.RepeatedScalarFieldContainer[str]
    unit: bool
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., words: _Optional[_Iterable[str]] = ..., unit: _Optional[bool] = ...) -> None: ...

class WordVector(_message.Message):
    __slots__ = ("word", "token", "values")
    WORD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    word: str
    token: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, word: _Optional[str] = ..., token: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class GetVectorsResponse(_message.Message):
    __slots__ = ("model", "model_version", "vectors")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    vectors: _containers.RepeatedCompositeFieldContainer[WordVector]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., vectors: _Optional[_Iterable[_Union[WordVector, _Mapping]]] = ...) -> None: ...

class MostSimilarRequest(_message.Message):
    __slots__ = ("model", "model_version", "positive", "negative", "top_k", "exclude_inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    positive: _containers.RepeatedScalarFieldContainer[str]
    negative: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    exclude_inputs: bool
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., positive: _Optional[_Iterable[str]] = ..., negative: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., exclude_inputs: _Optional[bool] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("word", "id", "score")
    WORD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    word: str
    id: int
    score: float
    def __init__(self, word: _Optional[str] = ..., id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class MostSimilarResponse(_message.Message):
    __slots__ = ("model", "model_version", "neighbors")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class WordPair(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: str
    second: str
    def __init__(self, first: _Optional[str] = ..., second: _Optional[str] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("model", "model_version", "pairs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    pairs: _containers.RepeatedCompositeFieldContainer[WordPair]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., pairs: _Optional[_Iterable[_Union[WordPair, _Mapping]]] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("model", "model_version", "cosines")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COSINES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    cosines: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., cosines: _Optional[_Iterable[float]] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("model", "model_version", "series", "horizon")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    series: _containers.RepeatedCompositeFieldContainer[Series]
    horizon: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ..., horizon: _Optional[int] = ...) -> None: ...

class Forecast(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("model", "model_version", "forecasts", "horizon", "trained_horizon", "fed_back")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORECASTS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    TRAINED_HORIZON_FIELD_NUMBER: _ClassVar[int]
    FED_BACK_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    forecasts: _containers.RepeatedCompositeFieldContainer[Forecast]
    horizon: int
    trained_horizon: int
    fed_back: bool
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., forecasts: _Optional[_Iterable[_Union[Forecast, _Mapping]]] = ..., horizon: _Optional[int] = ..., trained_horizon: _Optional[int] = ..., fed_back: _Optional[bool] = ...) -> None: ...

class ForecastStreamRequest(_message.Message):
    __slots__ = ("model", "model_version", "values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastStreamResponse(_message.Message):
    __slots__ = ("observations", "next", "ahead")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    observations: int
    next: float
    ahead: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, observations: _Optional[int] = ..., next: _Optional[float] = ..., ahead: _Optional[_Iterable[float]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "model_version", "count", "seed", "latents", "formats")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    count: int
    seed: int
    latents: LatentList
    formats: _containers.RepeatedScalarFieldContainer[ImageFormat]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ..., latents: _Optional[_Union[LatentList, _Mapping]] = ..., formats: _Optional[_Iterable[_Union[ImageFormat, str]]] = ...) -> None: ...

class LatentList(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "model_version", "images", "seed", "seeded", "latent_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SEEDED_FIELD_NUMBER: _ClassVar[int]
    LATENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[OutputImage]
    seed: int
    seeded: bool
    latent_size: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[OutputImage, _Mapping]]] = ..., seed: _Optional[int] = ..., seeded: _Optional[bool] = ..., latent_size: _Optional[int] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("model", "model_version", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("model", "model_version", "codes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    codes: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., codes: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "formats")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    formats: _containers.RepeatedScalarFieldContainer[ImageFormat]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., formats: _Optional[_Iterable[_Union[ImageFormat, str]]] = ...) -> None: ...

class Reconstruction(_message.Message):
    __slots__ = ("image", "error")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    image: OutputImage
    error: float
    def __init__(self, image: _Optional[_Union[OutputImage, _Mapping]] = ..., error: _Optional[float] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("model", "model_version", "reconstructions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    reconstructions: _containers.RepeatedCompositeFieldContainer[Reconstruction]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., reconstructions: _Optional[_Iterable[_Union[Reconstruction, _Mapping]]] = ...) -> None: ...

class TabularValue(_message.Message):
    __slots__ = ("text", "number", "missing")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    text: str
    number: float
    missing: bool
    def __init__(self, text: _Optional[str] = ..., number: _Optional[float] = ..., missing: _Optional[bool] = ...) -> None: ...

class TabularRow(_message.Message):
    __slots__ = ("cells",)
    class CellsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TabularValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TabularValue, _Mapping]] = ...) -> None: ...
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.MessageMap[str, TabularValue]
    def __init__(self, cells: _Optional[_Mapping[str, TabularValue]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "model_version", "rows", "csv", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    rows: _containers.RepeatedCompositeFieldContainer[TabularRow]
    csv: str
    top_k: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[TabularRow, _Mapping]]] = ..., csv: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class TabularAnswer(_message.Message):
    __slots__ = ("label", "classes", "value")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    label: str
    classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    value: float
    def __init__(self, label: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., value: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "model_version", "kind", "target", "predictions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    kind: str
    target: str
    predictions: _containers.RepeatedCompositeFieldContainer[TabularAnswer]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[TabularAnswer, _Mapping]]] = ...) -> None: ...

class ColumnsRequest(_message.Message):
    __slots__ = ("model", "model_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class TabularColumn(_message.Message):
    __slots__ = ("name", "numeric", "mean", "std", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    numeric: bool
    mean: float
    std: float
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., numeric: _Optional[bool] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnsResponse(_message.Message):
    __slots__ = ("model", "model_version", "kind", "target", "columns", "missing_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MISSING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    kind: str
    target: str
    columns: _containers.RepeatedCompositeFieldContainer[TabularColumn]
    missing_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[TabularColumn, _Mapping]]] = ..., missing_tokens: _Optional[_Iterable[str]] = ...) -> None: ...
