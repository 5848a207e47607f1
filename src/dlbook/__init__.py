"""dlbook: the helper package behind the executable book.

Chapters call these modules; they hold the logic, the notebooks hold the story.
"""

__version__ = "0.1.0"
