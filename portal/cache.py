"""The Redis cache's serializer: a value that no longer unpickles reads as a miss, not an error."""

import logging
import pickle
from typing import Any

from django.core.cache.backends.redis import RedisSerializer

log = logging.getLogger(__name__)


class TolerantSerializer(RedisSerializer):
    """Cached values are pickles that name their class's module. After a deploy that moves or renames a class
    (or beside another version of the portal on the same Redis) an old entry cannot be loaded; treating it as
    absent lets the page recompute it, where Django's own serializer would answer 500 until the entry expires."""

    # Any, as the base class takes it: Redis hands back an int for counters and bytes for the rest.
    def loads(self, data: Any) -> Any:
        try:
            return super().loads(data)
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError, ValueError) as exc:
            log.warning("a cached value could not be read (%s): treated as a miss", exc.__class__.__name__)
            return None
