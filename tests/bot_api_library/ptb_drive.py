"""Drives the gateway's HTTP front door with python-telegram-bot, as a service
would after changing only its base URL.

Usage: ptb_drive.py BASE_URL KEY CHAT_ID
Prints one JSON object with what the library got back; exits non-zero when
the library raised where it should not have.
"""

import asyncio
import json
import sys

import telegram
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto
from telegram.request import HTTPXRequest


def pattern(n, seed):
    return bytes((i * seed + 11) % 251 for i in range(n))


async def main(base, key, chat):
    bot = Bot(
        token=key,
        base_url=f"{base}/bot",
        request=HTTPXRequest(read_timeout=30, write_timeout=30),
    )
    out = {"library": telegram.__version__}
    async with bot:  # initialize(): getMe
        out["me"] = bot.bot.id
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("Pay", callback_data="pay:1")]]
        )
        text = await bot.send_message(chat, "from python-telegram-bot", reply_markup=keyboard)
        out["text_id"] = text.message_id
        photo = await bot.send_photo(chat, photo=pattern(70_000, 7), caption="chart")
        out["photo_id"] = photo.message_id
        out["photo_file_id"] = photo.photo[-1].file_id
        edited = await bot.edit_message_text(
            "edited by python-telegram-bot", chat_id=chat, message_id=text.message_id
        )
        out["edited_text"] = edited.text
        album = await bot.send_media_group(
            chat,
            [InputMediaPhoto(pattern(20_000, 3)), InputMediaPhoto(pattern(30_000, 5))],
        )
        out["album_ids"] = [m.message_id for m in album]
        out["deleted"] = await bot.delete_message(chat, album[0].message_id)
        try:
            await bot.get_updates()
            out["get_updates"] = "answered"
        except telegram.error.BadRequest as e:
            out["get_updates"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
